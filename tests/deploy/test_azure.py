"""Offline checks of the Azure deployment in deploy/azure (issue 7).

What an operator would otherwise find out only after `az deployment group create`:

- the template's load balancer, scale set and NSG have the properties the design rests on
  (asserted with jq, as an operator would query the file);
- every parameters('x') / variables('y') the template uses is defined, and every defined
  parameter and variable is used;
- the customData the template computes, evaluated here for several sets of parameter
  values by a small evaluator of exactly the ARM functions the template uses, is
  cloud-init.yaml with the placeholders filled in (so the inlined copy cannot drift), is
  valid cloud-config (`cloud-init schema`), fits Azure's 64 KiB customData limit, and
  writes a hubdns.toml that `hubdns --check-config` accepts and that says what the
  parameters asked for; the bootstrap script it writes passes shellcheck;
- main.bicep reads the same cloud-init.yaml and fills the same placeholders.

The tools (jq, cloud-init, shellcheck) are required, not optional: a missing one fails
the test (scripts/deps.sh --test installs them).

After editing deploy/azure/cloud-init.yaml, copy it into the template with
    python3 tests/deploy/test_azure.py --sync-template
"""

import base64
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import unittest

import yaml

SOURCE_DIR = os.environ.get("HUBDNS_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
AZURE_DIR = os.path.join(SOURCE_DIR, "deploy", "azure")
TEMPLATE_PATH = os.path.join(AZURE_DIR, "azuredeploy.json")
CLOUD_INIT_PATH = os.path.join(AZURE_DIR, "cloud-init.yaml")
BICEP_PATH = os.path.join(AZURE_DIR, "main.bicep")
README_PATH = os.path.join(AZURE_DIR, "README.md")

# Azure refuses customData longer than this (it counts the base64 text).
CUSTOM_DATA_LIMIT = 65535
PLACEHOLDER_RE = re.compile(r"__HUBDNS_[A-Z_]+__")
VMSS_TYPE = "Microsoft.Compute/virtualMachineScaleSets"
LB_TYPE = "Microsoft.Network/loadBalancers"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHubdnsTestKeyHubdnsTestKeyHubdnsTestKey test@hubdns"


def require_tool(name):
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} is required for this test and is not installed "
                             f"(scripts/deps.sh --test installs it)")
    return path


def hubdns_binary():
    binary = os.environ.get("HUBDNS_BINARY")
    if not binary:
        build_dir = os.environ.get("HUBDNS_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
        binary = os.path.join(build_dir, "daemon", "hubdns")
    if not os.access(binary, os.X_OK):
        raise AssertionError(f"hubdns binary not found at {binary} (set HUBDNS_BINARY)")
    return binary


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_template():
    with open(TEMPLATE_PATH, encoding="utf-8") as f:
        return json.load(f)


# --------------------------------------------------------------------------------------
# A small evaluator of ARM template expressions: exactly the functions the template's
# customData and its inputs use, with ARM's semantics where they matter (if() evaluates
# only the branch it takes, string() of an array or object is compact JSON, replace()
# replaces every occurrence). Anything else is an error, so a template that starts using
# a new function fails here until the evaluator learns it.
# --------------------------------------------------------------------------------------

class ArmError(Exception):
    pass


_TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(),.\[\]])
""", re.VERBOSE)


def _tokenize(text):
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise ArmError(f"cannot read expression at {text[pos:pos + 30]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "space":
            continue
        value = m.group(kind)
        if kind == "string":
            value = value[1:-1].replace("''", "'")
        elif kind == "number":
            value = int(value)
        tokens.append((kind, value))
    return tokens


class _Parser:
    """expr := primary { '.' ident | '[' expr ']' } ; primary := string | number | ident '(' [expr {',' expr}] ')'"""

    def __init__(self, text):
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def take(self, kind, value=None):
        tok = self.peek()
        if tok[0] != kind or (value is not None and tok[1] != value):
            raise ArmError(f"expected {value or kind}, got {tok}")
        self.pos += 1
        return tok[1]

    def parse(self):
        node = self.expr()
        if self.pos != len(self.tokens):
            raise ArmError(f"trailing tokens: {self.tokens[self.pos:]}")
        return node

    def expr(self):
        kind, value = self.peek()
        if kind == "string":
            self.pos += 1
            node = ("lit", value)
        elif kind == "number":
            self.pos += 1
            node = ("lit", value)
        elif kind == "ident":
            self.pos += 1
            self.take("punct", "(")
            args = []
            if self.peek() != ("punct", ")"):
                args.append(self.expr())
                while self.peek() == ("punct", ","):
                    self.pos += 1
                    args.append(self.expr())
            self.take("punct", ")")
            node = ("call", value, args)
        else:
            raise ArmError(f"unexpected token {self.peek()}")
        while True:
            if self.peek() == ("punct", "."):
                self.pos += 1
                node = ("prop", node, self.take("ident"))
            elif self.peek() == ("punct", "["):
                self.pos += 1
                index = self.expr()
                self.take("punct", "]")
                node = ("index", node, index)
            else:
                return node


def arm_string(value):
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    raise ArmError(f"string() of {value!r}")


class ArmEvaluator:
    def __init__(self, template, parameter_values):
        self.template = template
        self.values = dict(parameter_values)
        unknown = set(self.values) - set(template["parameters"])
        if unknown:
            raise ArmError(f"values for undefined parameters: {sorted(unknown)}")
        self.var_cache = {}
        self.var_active = set()
        self.copy_index = {}
        self.copy_loops = {loop["name"]: loop for loop in template["variables"].get("copy", [])}

    def value(self, raw):
        """Evaluates a template value: a "[...]" string is an expression, "[[" escapes."""
        if isinstance(raw, str):
            if raw.startswith("[["):
                return raw[1:]
            if raw.startswith("[") and raw.endswith("]"):
                return self.expression(raw[1:-1])
            return raw
        if isinstance(raw, list):
            return [self.value(item) for item in raw]
        if isinstance(raw, dict):
            return {key: self.value(item) for key, item in raw.items()}
        return raw

    def expression(self, text):
        return self.eval(_Parser(text).parse())

    def parameter(self, name):
        spec = self.template["parameters"].get(name)
        if spec is None:
            raise ArmError(f"parameters('{name}') is not defined")
        if name in self.values:
            value = self.values[name]
        elif "defaultValue" in spec:
            value = self.value(spec["defaultValue"])
        else:
            raise ArmError(f"parameter {name} has no value and no default")
        expected = {"string": str, "securestring": str, "int": int, "bool": bool,
                    "array": list, "object": dict, "secureobject": dict}[spec["type"].lower()]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ArmError(f"parameter {name}: {value!r} is not of type {spec['type']}")
        if "allowedValues" in spec and value not in spec["allowedValues"]:
            raise ArmError(f"parameter {name}: {value!r} not in allowedValues")
        if "minValue" in spec and value < spec["minValue"]:
            raise ArmError(f"parameter {name}: {value} < minValue")
        if "maxValue" in spec and value > spec["maxValue"]:
            raise ArmError(f"parameter {name}: {value} > maxValue")
        return value

    def variable(self, name):
        if name in self.var_cache:
            return self.var_cache[name]
        if name in self.var_active:
            raise ArmError(f"variables('{name}') refers to itself")
        self.var_active.add(name)
        if name in self.copy_loops:
            loop = self.copy_loops[name]
            count = self.value(loop["count"])
            items = []
            for i in range(count):
                self.copy_index[name] = i
                items.append(self.value(loop["input"]))
            self.copy_index.pop(name, None)
            result = items
        elif name in self.template["variables"] and name != "copy":
            result = self.value(self.template["variables"][name])
        else:
            raise ArmError(f"variables('{name}') is not defined")
        self.var_active.discard(name)
        self.var_cache[name] = result
        return result

    def eval(self, node):
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "prop":
            target = self.eval(node[1])
            if not isinstance(target, dict) or node[2] not in target:
                raise ArmError(f"no property {node[2]} in {target!r}")
            return target[node[2]]
        if kind == "index":
            target, index = self.eval(node[1]), self.eval(node[2])
            try:
                return target[index]
            except (IndexError, KeyError, TypeError) as e:
                raise ArmError(f"cannot index {target!r} with {index!r}") from e
        name, args = node[1], node[2]
        lname = name.lower()
        if lname == "if":
            if len(args) != 3:
                raise ArmError("if() takes 3 arguments")
            condition = self.eval(args[0])
            if not isinstance(condition, bool):
                raise ArmError(f"if() condition {condition!r} is not a bool")
            return self.eval(args[1] if condition else args[2])
        values = [self.eval(arg) for arg in args]
        return self.call(lname, values)

    def call(self, name, a):
        def need(n):
            if len(a) != n:
                raise ArmError(f"{name}() takes {n} arguments, got {len(a)}")

        def strings(*xs):
            for x in xs:
                if not isinstance(x, str):
                    raise ArmError(f"{name}(): {x!r} is not a string")

        if name == "parameters":
            need(1)
            return self.parameter(a[0])
        if name == "variables":
            need(1)
            return self.variable(a[0])
        if name == "copyindex":
            loop = a[0] if a and isinstance(a[0], str) else None
            offset = a[-1] if a and isinstance(a[-1], int) else 0
            if loop is None or loop not in self.copy_index:
                raise ArmError(f"copyIndex({loop!r}) outside its loop")
            return self.copy_index[loop] + offset
        if name == "concat":
            if all(isinstance(x, str) for x in a):
                return "".join(a)
            if all(isinstance(x, list) for x in a):
                return [item for x in a for item in x]
            raise ArmError(f"concat() of mixed types {a!r}")
        if name == "replace":
            need(3)
            strings(*a)
            return a[0].replace(a[1], a[2])
        if name == "string":
            need(1)
            return arm_string(a[0])
        if name == "join":
            need(2)
            if not isinstance(a[0], list):
                raise ArmError("join() needs an array")
            strings(a[1], *a[0])
            return a[1].join(a[0])
        if name == "base64":
            need(1)
            strings(a[0])
            return base64.b64encode(a[0].encode("utf-8")).decode("ascii")
        if name == "add":
            need(2)
            return a[0] + a[1]
        if name == "length":
            need(1)
            return len(a[0])
        if name == "empty":
            need(1)
            return a[0] is None or len(a[0]) == 0
        if name == "equals":
            need(2)
            return a[0] == a[1]
        if name == "greater":
            need(2)
            return a[0] > a[1]
        if name == "createarray":
            return list(a)
        if name == "true":
            return True
        if name == "false":
            return False
        if name == "null":
            return None
        if name == "resourcegroup":
            return {"name": "rg-hubdns-test", "location": "westeurope"}
        raise ArmError(f"the test's evaluator does not know {name}()")


def vmss(template):
    found = [r for r in template["resources"] if r["type"] == VMSS_TYPE]
    if len(found) != 1:
        raise AssertionError(f"expected one scale set, found {len(found)}")
    return found[0]


def custom_data(template, parameter_values):
    """The base64 customData the template gives the scale set for these parameters."""
    evaluator = ArmEvaluator(template, parameter_values)
    expr = vmss(template)["properties"]["virtualMachineProfile"]["osProfile"]["customData"]
    return evaluator.value(expr)


# --------------------------------------------------------------------------------------
# The same rendering, written independently in Python from cloud-init.yaml: what the
# template's replace() chain is meant to produce.
# --------------------------------------------------------------------------------------

def effective_parameters(template, overrides):
    evaluator = ArmEvaluator(template, overrides)
    return {name: evaluator.parameter(name) for name in template["parameters"]
            if name in overrides or "defaultValue" in template["parameters"][name]}


def render_cloud_init(text, p):
    indent = " " * 6
    blocks = []
    for rule in p["conditionalForwarders"]:
        lines = [
            "[[forward]]",
            f'zone = "{rule["zone"]}"',
            "upstreams = " + json.dumps(rule["upstreams"], separators=(",", ":")),
            'policy = "fastest"',
            "critical = false",
            'attempt_timeout = "3s"',
            "max_outstanding = 200",
            "cache = true",
        ]
        blocks.append("".join(indent + line + "\n" for line in lines))
    forward = "\n".join(blocks) if blocks else indent + "# (none)"
    replacements = {
        "__HUBDNS_ALLOW__": json.dumps(p["allowedClientPrefixes"], separators=(",", ":")),
        "__HUBDNS_HEALTH_PORT__": str(p["healthPort"]),
        "__HUBDNS_DRAIN_GRACE__": f'{p["drainGraceSeconds"]}s',
        "__HUBDNS_TIMEOUT_STOP_SEC__": str(p["drainGraceSeconds"] + 15),
        "__HUBDNS_AZURE_DNS__": p["azureDnsIp"],
        indent + "__HUBDNS_FORWARD_RULES__": forward,
        "__HUBDNS_ADMIN_TOKEN__": p["adminToken"],
        "__HUBDNS_PACKAGE_URL__": p["hubdnsPackageUrl"],
    }
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"{old!r} is not in cloud-init.yaml")
        text = text.replace(old, new)
    return text


def written_file(cloud_config, path):
    for entry in cloud_config.get("write_files", []):
        if entry.get("path") == path:
            return entry
    raise AssertionError(f"cloud-init writes no {path}")


# The parameter sets the rendering is checked with: the defaults (the reference
# architecture), and others that exercise every placeholder with different values.
PARAMETER_SETS = {
    "defaults": {"adminSshPublicKey": SSH_KEY},
    "three-forwarders-ipv6-port-9053": {
        "adminSshPublicKey": SSH_KEY,
        "healthPort": 9053,
        "drainGraceSeconds": 30,
        "allowedClientPrefixes": ["10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "fd00::/8"],
        "conditionalForwarders": [
            {"zone": "az-spoke-1-internal.net", "upstreams": ["10.1.0.25"]},
            {"zone": "corp.contoso.com", "upstreams": ["192.168.1.10", "192.168.1.11:5353"]},
            {"zone": "v6.example.internal", "upstreams": ["2001:db8::53", "[2001:db8::54]:53"]},
        ],
        "hubdnsPackageUrl": "https://sthubdns.blob.core.windows.net/pkg/hubdns_0.1.0_amd64.deb"
                            "?sv=2022-11-02&sr=b&sp=r&sig=a%2Bb%3D",
        "adminToken": "Zq9-token_for-tests",
    },
    "no-forwarders-other-dns": {
        "adminSshPublicKey": SSH_KEY,
        "conditionalForwarders": [],
        "azureDnsIp": "10.0.6.4",
        "drainGraceSeconds": 240,
        "enableAutomaticRepairs": False,
    },
}


def run(argv, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)


def jq(filter_text, path=None):
    """True when `jq -e FILTER template` exits 0 (its last output is neither false nor null)."""
    result = run([require_tool("jq"), "-e", filter_text, path or TEMPLATE_PATH])
    if result.returncode not in (0, 1):
        raise AssertionError(f"jq failed ({result.returncode}): {result.stderr.strip()}\n{filter_text}")
    return result.returncode == 0


JQ_DEFS = """
def res(t): [.resources[] | select(.type == t)];
def lb: res("Microsoft.Network/loadBalancers") | if length == 1 then .[0] else error("one load balancer expected") end;
def vmss: res("Microsoft.Compute/virtualMachineScaleSets") | if length == 1 then .[0] else error("one scale set expected") end;
def rules: lb.properties.loadBalancingRules;
def probes: lb.properties.probes;
def nic: vmss.properties.virtualMachineProfile.networkProfile.networkInterfaceConfigurations[0].properties;
def nsgrules: .variables.nsgBaseRules;
"""

# (what, jq filter): each must hold for azuredeploy.json.
JQ_ASSERTIONS = [
    ("load balancer is Standard SKU (zone-redundant frontend, HTTP probes)",
     'lb.sku.name == "Standard"'),
    ("exactly two load-balancing rules, UDP 53 and TCP 53",
     '(rules | length == 2) and ([rules[].properties.protocol] | sort == ["Tcp", "Udp"])'
     ' and all(rules[].properties; .frontendPort == 53 and .backendPort == 53)'),
    ("both rules share one frontend, one backend pool and one probe",
     '([rules[].properties.frontendIPConfiguration.id] | unique | length == 1)'
     ' and ([rules[].properties.backendAddressPool.id] | unique | length == 1)'
     ' and ([rules[].properties.probe.id] | unique | length == 1)'
     ' and (rules[0].properties.probe.id == "[variables(\'lbProbeId\')]")'
     ' and (.variables.lbProbeId | contains("variables(\'lbProbeName\')"))'
     ' and (probes[0].name == "[variables(\'lbProbeName\')]")'),
    ("rules: no floating IP (hubdns listens on the instance address), idle timeout 4..30 min",
     'all(rules[].properties; .enableFloatingIP == false'
     ' and .idleTimeoutInMinutes >= 4 and .idleTimeoutInMinutes <= 30)'),
    ("exactly one probe: HTTP GET /readyz on the health port every 5 s",
     '(probes | length == 1) and (probes[0].properties | .protocol == "Http"'
     ' and .requestPath == "/readyz" and .port == "[parameters(\'healthPort\')]"'
     ' and .intervalInSeconds == 5)'),
    ("probe threshold set from a parameter, default 2",
     '(probes[0].properties.probeThreshold == "[parameters(\'probeThreshold\')]")'
     ' and (.parameters.probeThreshold.defaultValue == 2)'),
    ("all probed down: keep sending to every instance (AllProbedUp)",
     'probes[0].properties.noHealthyBackendsBehavior == "AllProbedUp"'),
    ("health port default 8053",
     '.parameters.healthPort.defaultValue == 8053'),
    ("frontend: static private IP from a parameter, default 10.0.5.25",
     '(lb.properties.frontendIPConfigurations | length == 1)'
     ' and (lb.properties.frontendIPConfigurations[0].properties'
     ' | .privateIPAllocationMethod == "Static"'
     ' and .privateIPAddress == "[parameters(\'loadBalancerFrontendIp\')]")'
     ' and (.parameters.loadBalancerFrontendIp.defaultValue == "10.0.5.25")'),
    ("scale set and frontend across zones 1, 2, 3 with zone balance",
     '(.parameters.availabilityZones.defaultValue == ["1", "2", "3"])'
     ' and (.variables.zonesOrNull | contains("parameters(\'availabilityZones\')"))'
     ' and (vmss.zones == "[variables(\'zonesOrNull\')]")'
     ' and (lb.properties.frontendIPConfigurations[0].zones == "[variables(\'zonesOrNull\')]")'
     ' and (vmss.properties.zoneBalance | contains("availabilityZones"))'),
    ("Uniform orchestration, no overprovisioning",
     'vmss.properties.orchestrationMode == "Uniform" and vmss.properties.overprovision == false'),
    ("instances resolve through Azure DNS 168.63.129.16, never through the load balancer",
     '(nic.dnsSettings.dnsServers == ["[parameters(\'azureDnsIp\')]"])'
     ' and (.parameters.azureDnsIp.defaultValue == "168.63.129.16")'),
    ("instances are in the backend pool, in the subnet",
     'nic.ipConfigurations[0].properties.loadBalancerBackendAddressPools[0].id'
     ' == "[variables(\'lbBackendPoolId\')]"'),
    ("terminate notification enabled, 5 minutes by default",
     '(vmss.properties.virtualMachineProfile.scheduledEventsProfile.terminateNotificationProfile'
     ' | .enable == true and .notBeforeTimeout == "[parameters(\'terminateNotBeforeTimeout\')]")'
     ' and (.parameters.terminateNotBeforeTimeout.defaultValue == "PT5M")'),
    ("Application Health extension (rich states) probes liveness on /livez/azure, not readiness",
     '(.variables.healthExtension.properties | .publisher == "Microsoft.ManagedServices"'
     ' and .type == "ApplicationHealthLinux" and .settings.protocol == "http"'
     ' and .settings.port == "[parameters(\'healthPort\')]"'
     ' and .settings.requestPath == "/livez/azure" and .typeHandlerVersion == "2.0")'
     ' and (vmss.properties.virtualMachineProfile.extensionProfile.extensions'
     ' | contains("variables(\'healthExtension\')"))'),
    ("automatic repairs and rolling upgrades follow enableAutomaticRepairs (default true)",
     '(.parameters.enableAutomaticRepairs.defaultValue == true)'
     ' and (vmss.properties.automaticRepairsPolicy.enabled == "[parameters(\'enableAutomaticRepairs\')]")'
     ' and (vmss.properties.upgradePolicy.mode | contains("Rolling"))'),
    ("NSG: AzureLoadBalancer may reach the health port",
     'any(nsgrules[].properties; .access == "Allow" and .direction == "Inbound"'
     ' and .protocol == "Tcp" and .sourceAddressPrefix == "AzureLoadBalancer"'
     ' and .destinationPortRange == "[string(parameters(\'healthPort\'))]")'),
    ("NSG: VirtualNetwork may reach UDP and TCP 53",
     '([nsgrules[].properties | select(.access == "Allow" and .sourceAddressPrefix == "VirtualNetwork"'
     ' and .destinationPortRange == "53") | .protocol] | sort == ["Tcp", "Udp"])'),
    ("NSG: the rest of the VNet is denied (health port and SSH only from adminSourcePrefixes)",
     'any(nsgrules[].properties; .access == "Deny" and .sourceAddressPrefix == "VirtualNetwork")'
     ' and (.parameters.adminSourcePrefixes.defaultValue == [])'),
    ("NSG attached to the instances' NIC",
     '(nic.networkSecurityGroup.id // "") | contains("networkSecurityGroups")'),
    ("customData is the base64 of the rendered cloud-init",
     'vmss.properties.virtualMachineProfile.osProfile.customData == "[base64(variables(\'cloudInit\'))]"'),
    ("deployment template schema 2019-04-01",
     '."$schema" == "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"'),
]


class TemplateAssertions(unittest.TestCase):
    def test_template_is_json(self):
        template = load_template()
        self.assertIn("resources", template)

    def test_jq_assertions(self):
        require_tool("jq")
        for what, filter_text in JQ_ASSERTIONS:
            with self.subTest(what):
                self.assertTrue(jq(JQ_DEFS + filter_text), f"does not hold: {what}\n  jq: {filter_text}")

    def test_jq_assertions_can_fail(self):
        # A filter that cannot fail proves nothing: each one must reject a template with the
        # property broken. One mutation per assertion, checked on a copy of the template.
        require_tool("jq")
        template = load_template()

        def lb(t):
            return next(r for r in t["resources"] if r["type"] == LB_TYPE)

        def vm(t):
            return vmss(t)

        def nic(t):
            return vm(t)["properties"]["virtualMachineProfile"]["networkProfile"][
                "networkInterfaceConfigurations"][0]["properties"]

        mutations = [
            lambda t: lb(t)["sku"].update(name="Basic"),
            lambda t: lb(t)["properties"]["loadBalancingRules"].pop(1),
            lambda t: lb(t)["properties"]["loadBalancingRules"][1]["properties"]["probe"].update(id="[variables('other')]"),
            lambda t: lb(t)["properties"]["loadBalancingRules"][0]["properties"].update(enableFloatingIP=True),
            lambda t: lb(t)["properties"]["probes"][0]["properties"].update(requestPath="/livez"),
            lambda t: lb(t)["properties"]["probes"][0]["properties"].pop("probeThreshold"),
            lambda t: lb(t)["properties"]["probes"][0]["properties"].update(noHealthyBackendsBehavior="AllProbedDown"),
            lambda t: t["parameters"]["healthPort"].update(defaultValue=8080),
            lambda t: t["parameters"]["loadBalancerFrontendIp"].update(defaultValue="10.0.5.4"),
            lambda t: t["parameters"]["availabilityZones"].update(defaultValue=["1"]),
            lambda t: vm(t)["properties"].update(orchestrationMode="Flexible"),
            lambda t: nic(t)["dnsSettings"].update(dnsServers=["[parameters('loadBalancerFrontendIp')]"]),
            lambda t: nic(t)["ipConfigurations"][0]["properties"].update(loadBalancerBackendAddressPools=[]),
            lambda t: vm(t)["properties"]["virtualMachineProfile"]["scheduledEventsProfile"][
                "terminateNotificationProfile"].update(enable=False),
            lambda t: t["variables"]["healthExtension"]["properties"]["settings"].update(
                requestPath="/livez?format=azure"),
            lambda t: vm(t)["properties"]["upgradePolicy"].update(mode="Manual"),
            lambda t: t["variables"]["nsgBaseRules"][0]["properties"].update(sourceAddressPrefix="VirtualNetwork"),
            lambda t: t["variables"]["nsgBaseRules"][2]["properties"].update(protocol="*"),
            lambda t: t["variables"]["nsgBaseRules"][3]["properties"].update(access="Allow"),
            lambda t: nic(t).pop("networkSecurityGroup"),
            lambda t: vm(t)["properties"]["virtualMachineProfile"]["osProfile"].update(
                customData="[variables('cloudInit')]"),
            lambda t: t.update({"$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#"}),
        ]
        self.assertEqual(len(mutations), len(JQ_ASSERTIONS), "one mutation per jq assertion")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "azuredeploy.json")
            for (what, filter_text), mutate in zip(JQ_ASSERTIONS, mutations):
                with self.subTest(what):
                    broken = copy.deepcopy(template)
                    mutate(broken)
                    with open(path, "w", encoding="utf-8") as f:
                        json.dump(broken, f)
                    self.assertFalse(jq(JQ_DEFS + filter_text, path),
                                     f"still holds after breaking it: {what}")


def _all_strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _all_strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _all_strings(item)


def lint_template(template):
    """Problems with parameter and variable references: undefined, or defined and unused."""
    problems = []
    expressions = [s for s in _all_strings(template) if s.startswith("[") and not s.startswith("[[")]
    used_params, used_vars, used_loops = set(), set(), set()
    for expr in expressions:
        used_params.update(re.findall(r"\bparameters\('([^']*)'\)", expr))
        used_vars.update(re.findall(r"\bvariables\('([^']*)'\)", expr))
        used_loops.update(re.findall(r"\bcopyIndex\('([^']*)'", expr))
    defined_params = set(template.get("parameters", {}))
    loops = {loop["name"] for loop in template.get("variables", {}).get("copy", [])}
    defined_vars = (set(template.get("variables", {})) - {"copy"}) | loops
    for name in sorted(used_params - defined_params):
        problems.append(f"parameters('{name}') is used but not defined")
    for name in sorted(used_vars - defined_vars):
        problems.append(f"variables('{name}') is used but not defined")
    for name in sorted(used_loops - loops):
        problems.append(f"copyIndex('{name}') names no copy loop")
    for name in sorted(defined_params - used_params):
        problems.append(f"parameter {name} is defined but never used")
    for name in sorted(defined_vars - used_vars):
        problems.append(f"variable {name} is defined but never used")
    for name, spec in template.get("parameters", {}).items():
        if not spec.get("metadata", {}).get("description"):
            problems.append(f"parameter {name} has no description")
    for resource in template["resources"]:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", resource.get("apiVersion", "")):
            problems.append(f"{resource['type']} has no apiVersion")
    return problems


class TemplateLint(unittest.TestCase):
    def test_references_are_defined_and_used(self):
        self.assertEqual(lint_template(load_template()), [])

    def test_lint_finds_problems(self):
        template = load_template()
        broken = copy.deepcopy(template)
        broken["parameters"]["unusedParameter"] = {"type": "string", "metadata": {"description": "x"}}
        broken["variables"]["lbName"] = "[concat(parameters('vmssNmae'), '-ilb')]"
        del broken["variables"]["lbProbeName"]
        problems = lint_template(broken)
        self.assertIn("parameter unusedParameter is defined but never used", problems)
        self.assertIn("parameters('vmssNmae') is used but not defined", problems)
        self.assertIn("variables('lbProbeName') is used but not defined", problems)


class CloudInitRendering(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.template = load_template()
        cls.cloud_init_text = read_text(CLOUD_INIT_PATH)
        cls.binary = hubdns_binary()
        cls.cloud_init = require_tool("cloud-init")
        cls.shellcheck = require_tool("shellcheck")

    def test_inlined_copy_is_cloud_init_yaml(self):
        self.assertEqual(
            self.template["variables"]["cloudInitTemplate"], self.cloud_init_text,
            "azuredeploy.json's variables.cloudInitTemplate differs from cloud-init.yaml; "
            "run: python3 tests/deploy/test_azure.py --sync-template")

    def test_every_placeholder_is_filled_by_the_template(self):
        placeholders = set(PLACEHOLDER_RE.findall(self.cloud_init_text))
        self.assertGreaterEqual(len(placeholders), 8)
        chain = self.template["variables"]["cloudInit"]
        for name in sorted(placeholders):
            with self.subTest(name):
                self.assertIn(f"'{name}'" if name != "__HUBDNS_FORWARD_RULES__"
                              else "'      __HUBDNS_FORWARD_RULES__'", chain)

    def test_cloud_init_yaml_itself_is_valid_cloud_config(self):
        # Before rendering, as an editor of the file sees it.
        self.assertTrue(self.cloud_init_text.startswith("#cloud-config\n"))
        yaml.safe_load(self.cloud_init_text)
        self.assert_schema_valid(self.cloud_init_text)

    def assert_schema_valid(self, text):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "user-data.yaml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            result = run([self.cloud_init, "schema", "-c", path])
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, f"cloud-init schema failed:\n{output}")
        self.assertIn("Valid cloud-config", output)
        for word in ("Invalid", "Error", "deprecated"):
            self.assertNotIn(word, output, output)
        return output

    def test_rendering_for_each_parameter_set(self):
        for name, values in PARAMETER_SETS.items():
            with self.subTest(parameters=name):
                self.check_rendering(name, values)

    def check_rendering(self, name, values):
        # 1. What the template computes equals cloud-init.yaml rendered independently.
        encoded = custom_data(self.template, values)
        self.assertLess(len(encoded), CUSTOM_DATA_LIMIT, "customData over Azure's limit")
        rendered = base64.b64decode(encoded).decode("utf-8")
        params = effective_parameters(self.template, values)
        expected = render_cloud_init(self.cloud_init_text, params)
        self.assertEqual(rendered, expected, "template rendering differs from cloud-init.yaml rendering")
        self.assertEqual(PLACEHOLDER_RE.findall(rendered), [], "placeholders left over")
        print(f"\n  [{name}] customData {len(encoded)} bytes base64 "
              f"({len(rendered)} bytes raw; limit {CUSTOM_DATA_LIMIT})", file=sys.stderr)

        # 2. Valid cloud-config.
        output = self.assert_schema_valid(rendered)
        print(f"  [{name}] cloud-init schema: {output.strip()}", file=sys.stderr)
        cloud_config = yaml.safe_load(rendered)

        # 3. The hubdns configuration it writes is accepted by hubdns and says what the
        #    parameters asked for.
        entry = written_file(cloud_config, "/etc/hubdns/hubdns.toml")
        toml_text = entry["content"]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "hubdns.toml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(toml_text)
            result = run([self.binary, "--check-config", path])
        self.assertEqual((result.returncode, result.stdout.strip()), (0, "ok"),
                         f"hubdns --check-config:\n{result.stdout}{result.stderr}")
        print(f"  [{name}] hubdns --check-config: {result.stdout.strip()}", file=sys.stderr)

        config = tomllib.loads(toml_text)
        self.assertEqual(config["server"]["listen"], ["0.0.0.0:53"])
        self.assertEqual(config["server"]["allow"], params["allowedClientPrefixes"])
        self.assertEqual(config["health"]["listen"], [f"0.0.0.0:{params['healthPort']}"])
        self.assertEqual(config["health"]["admin_token"], params["adminToken"])
        self.assertEqual(config["lifecycle"]["drain_grace"], f"{params['drainGraceSeconds']}s")
        self.assertEqual(config["lifecycle"]["scheduled_events"], "on")
        self.assertIs(config["lifecycle"]["ack_scheduled_events"], True)
        rules = config["forward"]
        self.assertEqual((rules[0]["zone"], rules[0]["upstreams"], rules[0]["critical"]),
                         (".", [params["azureDnsIp"]], True))
        self.assertEqual([(r["zone"], r["upstreams"], r["critical"]) for r in rules[1:]],
                         [(f["zone"], f["upstreams"], False) for f in params["conditionalForwarders"]])

        # 4. systemd waits for the whole drain before it kills hubdns.
        drop_in = written_file(cloud_config, "/etc/systemd/system/hubdns.service.d/10-azure.conf")
        timeout = int(re.search(r"^TimeoutStopSec=(\d+)$", drop_in["content"], re.M).group(1))
        query_timeout_s = 5
        self.assertGreater(timeout, params["drainGraceSeconds"] + query_timeout_s + 1)

        # 5. The bootstrap script is sound shell and carries the package URL verbatim.
        script = written_file(cloud_config, "/usr/local/sbin/hubdns-azure-bootstrap")
        self.assertEqual(script["permissions"], "0755")
        self.assertIn(f"package_url='{params['hubdnsPackageUrl']}'\n", script["content"])
        self.assertIn(f"health_port='{params['healthPort']}'\n", script["content"])
        self.assertIn("--force-confold", script["content"])
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "bootstrap.sh")
            with open(path, "w", encoding="utf-8") as f:
                f.write(script["content"])
            syntax = run(["sh", "-n", path])
            self.assertEqual(syntax.returncode, 0, syntax.stderr)
            lint = run([self.shellcheck, "-s", "sh", path])
            self.assertEqual(lint.returncode, 0, lint.stdout + lint.stderr)
        self.assertIn(["/usr/local/sbin/hubdns-azure-bootstrap"], cloud_config["runcmd"])

    def test_evaluator_catches_a_broken_replace_chain(self):
        # The comparison must notice when the template forgets a placeholder or fills it
        # with the wrong parameter.
        values = PARAMETER_SETS["three-forwarders-ipv6-port-9053"]
        params = effective_parameters(self.template, values)
        expected = render_cloud_init(self.cloud_init_text, params)
        broken = copy.deepcopy(self.template)
        broken["variables"]["cloudInit"] = broken["variables"]["cloudInit"].replace(
            "string(parameters('healthPort'))", "'8053'")
        rendered = base64.b64decode(custom_data(broken, values)).decode("utf-8")
        self.assertNotEqual(rendered, expected)
        broken = copy.deepcopy(self.template)
        broken["variables"]["cloudInitTemplate"] += "# edited only in the template\n"
        rendered = base64.b64decode(custom_data(broken, values)).decode("utf-8")
        self.assertNotEqual(rendered, expected)


class ProbedPathsAnswered(unittest.TestCase):
    """The paths the template makes Azure ask are answered by the real binary running the
    configuration cloud-init writes (defaults), with only what cannot work here changed:
    addresses moved to loopback and Azure DNS played by a fake on loopback."""

    @staticmethod
    def go_url_path(path):
        # Version 2 of the Application Health extension builds url.URL{Path: requestPath}
        # and sends its String(): Go escapes the path like this (notably "?" and "%").
        import urllib.parse
        return urllib.parse.quote(path, safe="/:@!$&'()*+,;=")

    def test_load_balancer_probe_and_health_extension_paths(self):
        sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))
        import harness

        template = load_template()
        rendered = base64.b64decode(custom_data(template, PARAMETER_SETS["defaults"])).decode("utf-8")
        toml_text = written_file(yaml.safe_load(rendered), "/etc/hubdns/hubdns.toml")["content"]
        lb = [r for r in template["resources"] if r["type"] == LB_TYPE][0]
        probe_path = lb["properties"]["probes"][0]["properties"]["requestPath"]
        extension_path = template["variables"]["healthExtension"]["properties"]["settings"]["requestPath"]

        upstream = harness.FakeUpstream(address="10.9.8.7")
        self.addCleanup(upstream.close)
        local = toml_text
        for old, new in [('listen = ["0.0.0.0:53"]', 'listen = ["127.0.0.1:{dns_port}"]'),
                         ('listen = ["0.0.0.0:8053"]', 'listen = ["127.0.0.1:{health_port}"]'),
                         ('upstreams = ["168.63.129.16"]', f'upstreams = ["{upstream.endpoint}"]'),
                         ('scheduled_events = "on"', 'scheduled_events = "off"')]:
            self.assertEqual(local.count(old), 1, f"rendered config lacks {old!r}")
            local = local.replace(old, new)
        # The conditional forwarders' servers are not here: drop their rules.
        local = local[:local.index("# Conditional forwarders")]
        # No drain wait at the stop (the drain has tests of its own).
        local = re.sub(r'^drain_grace = "[^"]*"', 'drain_grace = "0s"', local, count=1, flags=re.M)
        # The harness fills {dns_port} and {health_port} with str.format: double every
        # other brace (the TOML inline tables).
        local = local.replace("{", "{{").replace("}", "}}")
        local = local.replace("{{dns_port}}", "{dns_port}").replace("{{health_port}}", "{health_port}")
        with harness.Hubdns(local, binary=hubdns_binary()) as server:
            self.assertTrue(harness.wait_until(
                lambda: harness.curl(server.health_port, probe_path)[0] == 200, timeout=10), server.log())
            code, _, body = harness.curl(server.health_port, probe_path)
            self.assertEqual((code, body.strip()), (200, "ok"), f"load balancer probe {probe_path}")
            asked = self.go_url_path(extension_path)
            code, head, body = harness.curl(server.health_port, asked)
            self.assertEqual(code, 200, f"health extension asks {asked}: {head}")
            self.assertEqual(json.loads(body), {"ApplicationHealthState": "Healthy"}, asked)
            status, answers, out = harness.dig(server.dns_port, "www.example.com")
            self.assertEqual((status, answers), ("NOERROR", ["10.9.8.7"]), out)
            self.assertEqual(server.stop(), 0)

    def test_the_query_form_would_not_reach_hubdns_intact(self):
        # Why the template does not use "/livez?format=azure": the extension would send this.
        self.assertEqual(self.go_url_path("/livez?format=azure"), "/livez%3Fformat=azure")


class Bicep(unittest.TestCase):
    """main.bicep is not compiled here (no Bicep CLI); these textual checks keep it aligned."""

    @classmethod
    def setUpClass(cls):
        cls.bicep = read_text(BICEP_PATH)
        cls.template = load_template()
        cls.cloud_init_text = read_text(CLOUD_INIT_PATH)

    def test_marked_not_compiled(self):
        self.assertRegex(self.bicep[:2000], r"(?i)not compiled")

    def test_reads_cloud_init_yaml(self):
        self.assertRegex(self.bicep, r"loadTextContent\('cloud-init\.yaml'\)")

    def test_fills_the_same_placeholders(self):
        in_yaml = set(PLACEHOLDER_RE.findall(self.cloud_init_text))
        in_bicep = set(PLACEHOLDER_RE.findall(self.bicep))
        self.assertEqual(in_bicep, in_yaml)

    def test_same_parameters(self):
        bicep_params = set(re.findall(r"^param\s+(\w+)\s", self.bicep, re.M))
        self.assertEqual(bicep_params, set(self.template["parameters"]))

    def test_same_resource_types_and_api_versions(self):
        bicep_types = set(re.findall(r"'(Microsoft\.[A-Za-z]+/[A-Za-z]+)@(\d{4}-\d{2}-\d{2})'", self.bicep))
        arm_types = {(r["type"], r["apiVersion"]) for r in self.template["resources"]}
        self.assertEqual(bicep_types, arm_types)

    def test_same_design_choices(self):
        for needle in ["'AllProbedUp'", "'/readyz'", "intervalInSeconds: 5", "'Uniform'",
                       "noHealthyBackendsBehavior", "probeThreshold: probeThreshold",
                       "terminateNotificationProfile", "dnsServers: [\n", "'AzureLoadBalancer'",
                       "'ApplicationHealthLinux'", "requestPath: '/livez/azure'", "typeHandlerVersion: '2.0'",
                       "customData: base64(cloudInit)", "enableFloatingIP: false"]:
            with self.subTest(needle):
                self.assertIn(needle, self.bicep)


class Readme(unittest.TestCase):
    def test_explains_the_choices(self):
        text = read_text(README_PATH)
        for needle in ["AllProbedUp", "10.0.5.25", "168.63.129.16", "az deployment group create",
                       "/readyz", "/livez", "NAT gateway", "Basic", "terminate", "drain_grace"]:
            with self.subTest(needle):
                self.assertIn(needle, text)


def sync_template():
    """Copies cloud-init.yaml into azuredeploy.json's variables.cloudInitTemplate, touching
    only that line so the rest of the file keeps its layout."""
    text = read_text(TEMPLATE_PATH)
    pattern = re.compile(r'^(\s*"cloudInitTemplate": )"(?:[^"\\]|\\.)*"(,?)$', re.M)
    if len(pattern.findall(text)) != 1:
        raise SystemExit("azuredeploy.json: expected exactly one cloudInitTemplate line")
    value = json.dumps(read_text(CLOUD_INIT_PATH), ensure_ascii=False)
    new_text = pattern.sub(lambda m: m.group(1) + value + m.group(2), text)
    json.loads(new_text)
    if new_text != text:
        with open(TEMPLATE_PATH, "w", encoding="utf-8") as f:
            f.write(new_text)
        print(f"updated {TEMPLATE_PATH}")
    else:
        print(f"{TEMPLATE_PATH} already up to date")


if __name__ == "__main__":
    if sys.argv[1:] == ["--sync-template"]:
        sync_template()
    else:
        unittest.main()
