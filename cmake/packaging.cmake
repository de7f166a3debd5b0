# Installation layout and the Debian package (`cmake --build build --target package`).
#
# The package puts hubdns where a Debian daemon lives: /usr/bin/hubdns, the unit in
# /lib/systemd/system, the configuration in /etc/hubdns (a conffile: an upgrade never
# overwrites an operator's edits), the manual page and the docs under /usr/share. The
# maintainer scripts in deploy/debian enable and start the service the way debhelper's
# would. /etc and /lib are absolute on purpose: GNUInstallDirs would place them under the
# install prefix (/usr/etc), where neither systemd nor the unit looks.

include(GNUInstallDirs)

# The date the manual page shows: the release's, not the build's, so that two builds of
# the same source give the same package.
set(HUBDNS_MAN_DATE "2026-11-26")

install(TARGETS hubdns RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/hubdns.service DESTINATION /lib/systemd/system)
install(FILES ${PROJECT_SOURCE_DIR}/conf/hubdns.toml DESTINATION /etc/hubdns)

# Debian policy wants manual pages gzipped, with no timestamp in the gzip header (-n).
configure_file(${PROJECT_SOURCE_DIR}/docs/hubdns.8.in ${PROJECT_BINARY_DIR}/man/hubdns.8 @ONLY)
add_custom_command(
  OUTPUT ${PROJECT_BINARY_DIR}/man/hubdns.8.gz
  COMMAND gzip -9 -n -c ${PROJECT_BINARY_DIR}/man/hubdns.8 > ${PROJECT_BINARY_DIR}/man/hubdns.8.gz
  DEPENDS ${PROJECT_BINARY_DIR}/man/hubdns.8
  VERBATIM)
add_custom_target(hubdns_man ALL DEPENDS ${PROJECT_BINARY_DIR}/man/hubdns.8.gz)
install(FILES ${PROJECT_BINARY_DIR}/man/hubdns.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)

set(HUBDNS_DOC_DIR ${CMAKE_INSTALL_DATAROOTDIR}/doc/hubdns)
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${HUBDNS_DOC_DIR})
install(FILES ${PROJECT_SOURCE_DIR}/conf/README.md DESTINATION ${HUBDNS_DOC_DIR} RENAME config-reference.md)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/README.md DESTINATION ${HUBDNS_DOC_DIR} RENAME deploy.md)
install(FILES ${PROJECT_SOURCE_DIR}/conf/hub-and-spoke.toml ${PROJECT_SOURCE_DIR}/conf/hubdns.toml
        DESTINATION ${HUBDNS_DOC_DIR}/examples)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME hubdns)
set(CPACK_PACKAGE_VENDOR "hubdns developers")
set(CPACK_PACKAGE_CONTACT "hubdns developers <hubdns@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "DNS forwarder with a health endpoint that tells a load balancer the truth")
# The summary above is the control file's first Description line; this is the rest.
set(CPACK_PACKAGE_DESCRIPTION
    "hubdns relays DNS over UDP and TCP to upstream resolvers per zone (conditional\n\
forwarding, failover, caching, serve-stale) and answers HTTP health probes with\n\
whether this instance can resolve right now, so that a load balancer in front of a\n\
DNS proxy tier (Azure Standard internal load balancer, Kubernetes) sends port-53\n\
traffic only to instances that can.")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The package's version is the project's; the Debian revision says which packaging of it.
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
# hubdns_<version>-<revision>_<arch>.deb, the name Debian tools expect.
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
# Depends: computed from the binary's shared libraries (libuv1, libcurl4, libc6, ...) by
# dpkg-shlibdeps, so it matches whatever the build was linked against.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/deploy/debian/conffiles
    ${PROJECT_SOURCE_DIR}/deploy/debian/postinst
    ${PROJECT_SOURCE_DIR}/deploy/debian/prerm
    ${PROJECT_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
# Stripped, as Debian ships binaries; the build tree keeps the unstripped one for gdb.
set(CPACK_STRIP_FILES TRUE)
include(CPack)
