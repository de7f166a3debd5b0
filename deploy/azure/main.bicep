// hubdns, the DNS tier of an Azure hub-and-spoke network: a VM scale set across
// availability zones behind a Standard internal load balancer on UDP and TCP 53, whose
// HTTP probe asks each instance GET /readyz. The same deployment as azuredeploy.json.
//
// NOT COMPILED IN CI: the Bicep CLI cannot be installed where the tests run, so this file
// is checked only textually (tests/deploy/test_azure.py: same parameters, resource types
// and API versions, placeholders and key settings as azuredeploy.json). azuredeploy.json
// is the tested artifact; keep this file faithful to it. Check it yourself with
//   az bicep build --file deploy/azure/main.bicep --stdout >/dev/null
//
// Unlike ARM JSON, Bicep reads cloud-init.yaml directly (loadTextContent, at build time)
// and fills its __HUBDNS_*__ placeholders with the same replace() chain.
// Why each setting is what it is: deploy/azure/README.md.

targetScope = 'resourceGroup'

@description('Region of every resource. It must have availability zones unless availabilityZones is emptied.')
param location string = resourceGroup().location

@description('\'new\' creates the hub VNet and subnet here; \'existing\' deploys into a hub VNet and subnet that already exist (possibly in another resource group).')
@allowed([
  'new'
  'existing'
])
param vnetNewOrExisting string = 'new'

@description('Name of the hub VNet.')
param vnetName string = 'vnet-hub'

@description('Resource group of an existing hub VNet (ignored for a new one, which is created in the deployment\'s resource group).')
param vnetResourceGroup string = resourceGroup().name

@description('Address space of a new hub VNet.')
param vnetAddressPrefix string = '10.0.0.0/16'

@description('Subnet of the scale set and of the load balancer\'s frontend.')
param subnetName string = 'snet-dns'

@description('Address prefix of a new subnet; it must contain loadBalancerFrontendIp.')
param subnetAddressPrefix string = '10.0.5.0/24'

@description('For a new VNet: set its DNS server to the load balancer\'s frontend IP (step 2 of the reference flow). An existing VNet is not modified: set its DNS servers yourself (README).')
param newVnetDnsToLoadBalancer bool = true

@description('Name of the scale set, also the prefix of the instances\' host names and of the load balancer and NSG names.')
@minLength(1)
@maxLength(40)
param vmssName string = 'vmss-hubdns'

@description('Instances. Two survive the loss of one; three give one per zone.')
@minValue(1)
@maxValue(100)
param instanceCount int = 2

@description('Zones of the instances and of the load balancer\'s frontend (zone-redundant). Empty only in a region without zones.')
param availabilityZones array = [
  '1'
  '2'
  '3'
]

@description('VM size. Two vCPUs forward far more than Azure DNS\'s 1000 queries/s per VM.')
param vmSize string = 'Standard_D2s_v5'

@description('Accelerated networking; turn it off for a VM size that lacks it.')
param enableAcceleratedNetworking bool = true

@description('OS disk storage; hubdns writes nothing to disk but logs.')
@allowed([
  'Standard_LRS'
  'StandardSSD_LRS'
  'Premium_LRS'
])
param osDiskType string = 'StandardSSD_LRS'

@description('Image of the instances: a marketplace image (publisher, offer, sku, version) or { id: <compute gallery image version> } for an image with hubdns baked in.')
param imageReference object = {
  publisher: 'Debian'
  offer: 'debian-12'
  sku: '12-gen2'
  version: 'latest'
}

@description('Administrator of the instances (SSH key only).')
param adminUsername string = 'azureuser'

@description('SSH public key of adminUsername.')
param adminSshPublicKey string

@description('CIDR prefixes (jump hosts, Bastion subnet, monitoring) allowed to reach SSH and the health port (/status, /metrics, admin endpoints). Empty: only the load balancer\'s probe reaches the health port and nobody reaches SSH.')
param adminSourcePrefixes array = []

@description('Static private IP of the internal load balancer: the DNS server of the hub VNet and the target of the spoke and on-premises conditional forwarders.')
param loadBalancerFrontendIp string = '10.0.5.25'

@description('hubdns\'s HTTP health port ([health] listen): /readyz for the load balancer, /livez for the Application Health extension.')
@minValue(1024)
@maxValue(65535)
param healthPort int = 8053

@description('Consecutive probe results (5 s apart) that take an instance out of the pool or put it back. Keep probeThreshold x 5 s + 10 s within drainGraceSeconds.')
@minValue(1)
@maxValue(10)
param probeThreshold int = 2

@description('Azure-provided DNS: hubdns\'s upstream for every name not matched by a conditional forwarder, and the instances\' own DNS server (never the load balancer: an instance cannot reach its own internal load balancer, and it would loop).')
param azureDnsIp string = '168.63.129.16'

@description('Clients hubdns answers ([server] allow); others get REFUSED. Add every VNet and on-premises range that is not private (100.64.0.0/10, public ranges used privately).')
param allowedClientPrefixes array = [
  '10.0.0.0/8'
  '172.16.0.0/12'
  '192.168.0.0/16'
  '127.0.0.0/8'
  '::1/128'
  'fc00::/7'
]

@description('Zones not sent to Azure DNS: objects { zone: name, upstreams: [IP or IP:port or [IPv6]:port, ...] }, e.g. a spoke\'s DNS server or the on-premises domain controllers. None is critical for readiness.')
param conditionalForwarders array = [
  {
    zone: 'az-spoke-1-internal.net'
    upstreams: [
      '10.1.0.25'
    ]
  }
  {
    zone: 'corp.contoso.com'
    upstreams: [
      '192.168.1.10'
      '192.168.1.11'
    ]
  }
]

@description('URL of hubdns_<version>_amd64.deb, installed at first boot (needs outbound access). Secure because a storage SAS URL is a credential. Empty: the image must have hubdns installed already.')
@secure()
param hubdnsPackageUrl string = ''

@description('Bearer token for hubdns\'s admin endpoints from other hosts ([health] admin_token; letters, digits, - and _). Empty: loopback only.')
@secure()
param adminToken string = ''

@description('[lifecycle] drain_grace: after SIGTERM or a scheduled event, how long hubdns keeps answering while /readyz says 503, so the load balancer (probeThreshold x 5 s, plus up to 10 s before it acts on a probe result) moves new flows away first.')
@minValue(10)
@maxValue(240)
param drainGraceSeconds int = 20

@description('How long a Terminate scheduled event waits for approval. hubdns approves it after drainGraceSeconds, so this only matters when hubdns is not running; the shortest allowed is right.')
@allowed([
  'PT5M'
  'PT6M'
  'PT7M'
  'PT8M'
  'PT9M'
  'PT10M'
  'PT11M'
  'PT12M'
  'PT13M'
  'PT14M'
  'PT15M'
])
param terminateNotBeforeTimeout string = 'PT5M'

@description('Add the Application Health extension (liveness: GET /livez/azure) and turn on automatic instance repairs and rolling upgrades. Off: no extension, upgrades are Manual.')
param enableAutomaticRepairs bool = true

@description('Time after a VM state change (creation, reimage) before a repair may start: covers first-boot package installation. ISO 8601, PT10M to PT90M.')
param automaticRepairsGracePeriod string = 'PT30M'

@description('Rolling upgrades create new instances before deleting old ones (needs the MaxSurgeRollingUpgrade feature where it is still in preview, and spare quota and subnet addresses).')
param rollingUpgradeMaxSurge bool = false

@description('Tags for every resource.')
param tags object = {}

var lbName = '${vmssName}-ilb'
var lbFrontendName = 'dns-frontend'
var lbBackendPoolName = 'hubdns'
var lbProbeName = 'hubdns-readyz'
var nsgName = '${vmssName}-nsg'
var vnetResourceGroupName = vnetNewOrExisting == 'new' ? resourceGroup().name : vnetResourceGroup
var subnetId = resourceId(vnetResourceGroupName, 'Microsoft.Network/virtualNetworks/subnets', vnetName, subnetName)
var lbFrontendId = resourceId('Microsoft.Network/loadBalancers/frontendIPConfigurations', lbName, lbFrontendName)
var lbBackendPoolId = resourceId('Microsoft.Network/loadBalancers/backendAddressPools', lbName, lbBackendPoolName)
var lbProbeId = resourceId('Microsoft.Network/loadBalancers/probes', lbName, lbProbeName)
var zonesOrNull = empty(availabilityZones) ? null : availabilityZones

var nsgBaseRules = [
  {
    name: 'allow-lb-health-probe'
    properties: {
      description: 'The load balancer\'s HTTP probe (from the AzureLoadBalancer tag, 168.63.129.16) to GET /readyz.'
      priority: 100
      direction: 'Inbound'
      access: 'Allow'
      protocol: 'Tcp'
      sourceAddressPrefix: 'AzureLoadBalancer'
      sourcePortRange: '*'
      destinationAddressPrefix: '*'
      destinationPortRange: string(healthPort)
    }
  }
  {
    name: 'allow-dns-udp'
    properties: {
      description: 'DNS from the hub, peered spokes and on-premises (through the gateway): all carry the VirtualNetwork tag. The internal load balancer keeps the client\'s source address.'
      priority: 110
      direction: 'Inbound'
      access: 'Allow'
      protocol: 'Udp'
      sourceAddressPrefix: 'VirtualNetwork'
      sourcePortRange: '*'
      destinationAddressPrefix: '*'
      destinationPortRange: '53'
    }
  }
  {
    name: 'allow-dns-tcp'
    properties: {
      description: 'DNS over TCP: truncated answers, zone-sized answers, RFC 7766 clients.'
      priority: 120
      direction: 'Inbound'
      access: 'Allow'
      protocol: 'Tcp'
      sourceAddressPrefix: 'VirtualNetwork'
      sourcePortRange: '*'
      destinationAddressPrefix: '*'
      destinationPortRange: '53'
    }
  }
  {
    name: 'deny-other-vnet-inbound'
    properties: {
      description: 'Overrides the default AllowVnetInBound: the health port (/status, /metrics, admin endpoints) and SSH only from adminSourcePrefixes.'
      priority: 4096
      direction: 'Inbound'
      access: 'Deny'
      protocol: '*'
      sourceAddressPrefix: 'VirtualNetwork'
      sourcePortRange: '*'
      destinationAddressPrefix: '*'
      destinationPortRange: '*'
    }
  }
]

var nsgAdminRules = [
  {
    name: 'allow-admin-health-port'
    properties: {
      description: '/readyz, /status, /metrics and the admin endpoints (token or loopback) for operators and monitoring.'
      priority: 200
      direction: 'Inbound'
      access: 'Allow'
      protocol: 'Tcp'
      sourceAddressPrefixes: adminSourcePrefixes
      sourcePortRange: '*'
      destinationAddressPrefix: '*'
      destinationPortRange: string(healthPort)
    }
  }
  {
    name: 'allow-admin-ssh'
    properties: {
      description: 'SSH for operators.'
      priority: 210
      direction: 'Inbound'
      access: 'Allow'
      protocol: 'Tcp'
      sourceAddressPrefixes: adminSourcePrefixes
      sourcePortRange: '*'
      destinationAddressPrefix: '*'
      destinationPortRange: '22'
    }
  }
]

// Rich health states (version 2) on "/livez/azure": hubdns answers 200 with
// {"ApplicationHealthState": "Healthy" | "Unhealthy"}. Not "/livez?format=azure": version 2
// puts requestPath into the URL's path and escapes the "?". README: "Application Health
// extension".
var healthExtension = {
  name: 'HealthExtension'
  properties: {
    publisher: 'Microsoft.ManagedServices'
    type: 'ApplicationHealthLinux'
    typeHandlerVersion: '2.0'
    autoUpgradeMinorVersion: true
    settings: {
      protocol: 'http'
      port: healthPort
      requestPath: '/livez/azure'
      intervalInSeconds: 5
      numberOfProbes: 3
      gracePeriod: 1800
    }
  }
}

// One [[forward]] block per conditional forwarder, indented to sit inside the YAML block
// that holds hubdns.toml. string() of an array of strings is a valid TOML array.
var forwardRuleBlocks = [
  for rule in conditionalForwarders: '      [[forward]]\n      zone = "${rule.zone}"\n      upstreams = ${string(rule.upstreams)}\n      policy = "fastest"\n      critical = false\n      attempt_timeout = "3s"\n      max_outstanding = 200\n      cache = true\n'
]
var forwardRules = empty(conditionalForwarders) ? '      # (none)' : join(forwardRuleBlocks, '\n')

// replace(), not format(): the TOML has braces ({ name = ".", type = "SOA" }). Free-text
// values (forward rules, token, URL) go last, so nothing in them is mistaken for a
// placeholder. Same order as azuredeploy.json.
var cloudInit = replace(replace(replace(replace(replace(replace(replace(replace(loadTextContent('cloud-init.yaml'), '__HUBDNS_ALLOW__', string(allowedClientPrefixes)), '__HUBDNS_HEALTH_PORT__', string(healthPort)), '__HUBDNS_DRAIN_GRACE__', '${drainGraceSeconds}s'), '__HUBDNS_TIMEOUT_STOP_SEC__', string(drainGraceSeconds + 15)), '__HUBDNS_AZURE_DNS__', azureDnsIp), '      __HUBDNS_FORWARD_RULES__', forwardRules), '__HUBDNS_ADMIN_TOKEN__', adminToken), '__HUBDNS_PACKAGE_URL__', hubdnsPackageUrl)

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = if (vnetNewOrExisting == 'new') {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        vnetAddressPrefix
      ]
    }
    dhcpOptions: {
      dnsServers: newVnetDnsToLoadBalancer ? [
        loadBalancerFrontendIp
      ] : []
    }
    subnets: [
      {
        name: subnetName
        properties: {
          addressPrefix: subnetAddressPrefix
        }
      }
    ]
  }
}

// On the instances' NIC rather than the subnet: an existing hub subnet may carry an NSG
// of its own, which a template must not replace.
resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: nsgName
  location: location
  tags: tags
  properties: {
    securityRules: concat(nsgBaseRules, empty(adminSourcePrefixes) ? [] : nsgAdminRules)
  }
}

resource lb 'Microsoft.Network/loadBalancers@2024-05-01' = {
  name: lbName
  location: location
  tags: tags
  dependsOn: [
    vnet
  ]
  sku: {
    name: 'Standard'
    tier: 'Regional'
  }
  properties: {
    frontendIPConfigurations: [
      {
        name: lbFrontendName
        zones: zonesOrNull
        properties: {
          privateIPAllocationMethod: 'Static'
          privateIPAddress: loadBalancerFrontendIp
          privateIPAddressVersion: 'IPv4'
          subnet: {
            id: subnetId
          }
        }
      }
    ]
    backendAddressPools: [
      {
        name: lbBackendPoolName
      }
    ]
    // One probe for both rules: readiness is the same whichever transport asks.
    probes: [
      {
        name: lbProbeName
        properties: {
          protocol: 'Http'
          port: healthPort
          requestPath: '/readyz'
          intervalInSeconds: 5
          probeThreshold: probeThreshold
          // A shared upstream outage makes every instance unready at once; sending to
          // all then beats dropping every query (cache and stale answers still work).
          noHealthyBackendsBehavior: 'AllProbedUp'
        }
      }
    ]
    loadBalancingRules: [
      {
        name: 'dns-udp'
        properties: {
          frontendIPConfiguration: {
            id: lbFrontendId
          }
          backendAddressPool: {
            id: lbBackendPoolId
          }
          probe: {
            id: lbProbeId
          }
          protocol: 'Udp'
          frontendPort: 53
          backendPort: 53
          enableFloatingIP: false
          idleTimeoutInMinutes: 4
          loadDistribution: 'Default'
        }
      }
      {
        name: 'dns-tcp'
        properties: {
          frontendIPConfiguration: {
            id: lbFrontendId
          }
          backendAddressPool: {
            id: lbBackendPoolId
          }
          probe: {
            id: lbProbeId
          }
          protocol: 'Tcp'
          frontendPort: 53
          backendPort: 53
          enableFloatingIP: false
          idleTimeoutInMinutes: 4
          enableTcpReset: true
          loadDistribution: 'Default'
        }
      }
    ]
  }
}

resource vmss 'Microsoft.Compute/virtualMachineScaleSets@2024-07-01' = {
  name: vmssName
  location: location
  tags: tags
  dependsOn: [
    vnet
    lb
  ]
  zones: zonesOrNull
  sku: {
    name: vmSize
    tier: 'Standard'
    capacity: instanceCount
  }
  properties: {
    orchestrationMode: 'Uniform'
    zoneBalance: length(availabilityZones) > 1 ? true : null
    platformFaultDomainCount: 1
    // Extra instances would boot, install hubdns and join the backend pool only to be
    // deleted again.
    overprovision: false
    upgradePolicy: {
      mode: enableAutomaticRepairs ? 'Rolling' : 'Manual'
      rollingUpgradePolicy: {
        maxBatchInstancePercent: 20
        maxUnhealthyInstancePercent: 50
        maxUnhealthyUpgradedInstancePercent: 20
        pauseTimeBetweenBatches: 'PT1M'
        prioritizeUnhealthyInstances: true
        maxSurge: rollingUpgradeMaxSurge
      }
    }
    automaticRepairsPolicy: {
      enabled: enableAutomaticRepairs
      gracePeriod: automaticRepairsGracePeriod
      repairAction: 'Replace'
    }
    // Scale-in removes the oldest instances first (still balanced across zones), so
    // scaling out and back in replaces old instances with new ones (README: upgrades).
    scaleInPolicy: {
      rules: [
        'OldestVM'
      ]
    }
    virtualMachineProfile: {
      osProfile: {
        computerNamePrefix: vmssName
        adminUsername: adminUsername
        customData: base64(cloudInit)
        linuxConfiguration: {
          disablePasswordAuthentication: true
          provisionVMAgent: true
          ssh: {
            publicKeys: [
              {
                path: '/home/${adminUsername}/.ssh/authorized_keys'
                keyData: adminSshPublicKey
              }
            ]
          }
        }
      }
      storageProfile: {
        imageReference: imageReference
        osDisk: {
          createOption: 'FromImage'
          caching: 'ReadWrite'
          managedDisk: {
            storageAccountType: osDiskType
          }
        }
      }
      networkProfile: {
        networkInterfaceConfigurations: [
          {
            name: 'nic'
            properties: {
              primary: true
              enableAcceleratedNetworking: enableAcceleratedNetworking
              networkSecurityGroup: {
                id: nsg.id
              }
              // Azure DNS, not the load balancer: an instance cannot reach its own
              // internal load balancer's frontend, and hubdns asking hubdns would loop.
              dnsSettings: {
                dnsServers: [
                  azureDnsIp
                ]
              }
              ipConfigurations: [
                {
                  name: 'ipconfig'
                  properties: {
                    primary: true
                    privateIPAddressVersion: 'IPv4'
                    subnet: {
                      id: subnetId
                    }
                    loadBalancerBackendAddressPools: [
                      {
                        id: lbBackendPoolId
                      }
                    ]
                  }
                }
              ]
            }
          }
        ]
      }
      // hubdns watches Scheduled Events, drains for drain_grace, then approves the
      // event; the timeout only matters when hubdns cannot.
      scheduledEventsProfile: {
        terminateNotificationProfile: {
          enable: true
          notBeforeTimeout: terminateNotBeforeTimeout
        }
      }
      diagnosticsProfile: {
        bootDiagnostics: {
          enabled: true
        }
      }
      extensionProfile: {
        extensions: enableAutomaticRepairs ? [
          healthExtension
        ] : []
      }
    }
  }
}

output loadBalancerFrontendIp string = lb.properties.frontendIPConfigurations[0].properties.privateIPAddress
output loadBalancerId string = lb.id
output vmssId string = vmss.id
output subnetId string = subnetId
output healthProbe string = 'HTTP GET http://<instance>:${healthPort}/readyz every 5 s, ${probeThreshold} results to change state'
