# Installation (cmake --install) and the .deb (cpack -G DEB, or the
# target package): the two programs, their man pages and bash completion,
# the systemd template unit despooler@.service, its sysusers.d user and
# an example /etc/despool/SITE.conf.

set(DESPOOL_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
  "systemd system unit directory (relative: under the install prefix)")
set(DESPOOL_SYSUSERSDIR "lib/sysusers.d" CACHE STRING
  "sysusers.d directory (relative: under the install prefix)")
set(DESPOOL_DOC_DIR "${CMAKE_INSTALL_DATADIR}/doc/despool")
set(DESPOOL_PKG_DIR "${PROJECT_SOURCE_DIR}/packaging")
set(DESPOOL_GEN_DIR "${PROJECT_BINARY_DIR}/packaging")

install(TARGETS pkgpub despooler RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Man pages, compressed as Debian wants them (gzip -n: no timestamp, so
# the same page gives the same bytes).
find_program(DESPOOL_GZIP gzip)
foreach(page pkgpub.1 despooler.1)
  if(DESPOOL_GZIP)
    add_custom_command(OUTPUT ${DESPOOL_GEN_DIR}/${page}.gz
      COMMAND ${CMAKE_COMMAND} -E make_directory ${DESPOOL_GEN_DIR}
      COMMAND ${DESPOOL_GZIP} -9nc ${DESPOOL_PKG_DIR}/man/${page}
              > ${DESPOOL_GEN_DIR}/${page}.gz
      DEPENDS ${DESPOOL_PKG_DIR}/man/${page} VERBATIM)
    list(APPEND DESPOOL_MAN_FILES ${DESPOOL_GEN_DIR}/${page}.gz)
  else()
    list(APPEND DESPOOL_MAN_FILES ${DESPOOL_PKG_DIR}/man/${page})
  endif()
endforeach()

# The unit names the installed binary.
if(IS_ABSOLUTE "${CMAKE_INSTALL_BINDIR}")
  set(DESPOOL_BINDIR "${CMAKE_INSTALL_BINDIR}")
else()
  set(DESPOOL_BINDIR "${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}")
endif()
if(IS_ABSOLUTE "${DESPOOL_DOC_DIR}")
  set(DESPOOL_DOC_DIR_ABS "${DESPOOL_DOC_DIR}")
else()
  set(DESPOOL_DOC_DIR_ABS "${CMAKE_INSTALL_PREFIX}/${DESPOOL_DOC_DIR}")
endif()
set(DESPOOL_DOC_DIR_SAVED "${DESPOOL_DOC_DIR}")
set(DESPOOL_DOC_DIR "${DESPOOL_DOC_DIR_ABS}")
configure_file(${DESPOOL_PKG_DIR}/despooler@.service.in
  ${DESPOOL_GEN_DIR}/despooler@.service @ONLY)
set(DESPOOL_DOC_DIR "${DESPOOL_DOC_DIR_SAVED}")

# Debian wants a changelog and a copyright file in the package's doc dir.
configure_file(${DESPOOL_PKG_DIR}/debian/changelog.in
  ${DESPOOL_GEN_DIR}/changelog.Debian @ONLY)
if(DESPOOL_GZIP)
  add_custom_command(OUTPUT ${DESPOOL_GEN_DIR}/changelog.Debian.gz
    COMMAND ${DESPOOL_GZIP} -9nc ${DESPOOL_GEN_DIR}/changelog.Debian
            > ${DESPOOL_GEN_DIR}/changelog.Debian.gz
    DEPENDS ${DESPOOL_GEN_DIR}/changelog.Debian VERBATIM)
  set(DESPOOL_CHANGELOG ${DESPOOL_GEN_DIR}/changelog.Debian.gz)
else()
  set(DESPOOL_CHANGELOG ${DESPOOL_GEN_DIR}/changelog.Debian)
endif()
add_custom_target(despool_docs ALL
  DEPENDS ${DESPOOL_MAN_FILES} ${DESPOOL_CHANGELOG})

install(FILES ${DESPOOL_MAN_FILES} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${DESPOOL_GEN_DIR}/despooler@.service
  DESTINATION ${DESPOOL_SYSTEMD_UNITDIR})
install(FILES ${DESPOOL_PKG_DIR}/despool.sysusers
  DESTINATION ${DESPOOL_SYSUSERSDIR} RENAME despool.conf)
install(FILES ${DESPOOL_PKG_DIR}/completion/pkgpub
              ${DESPOOL_PKG_DIR}/completion/despooler
  DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
install(FILES ${DESPOOL_PKG_DIR}/site.conf
  DESTINATION ${DESPOOL_DOC_DIR}/examples)
install(FILES ${DESPOOL_PKG_DIR}/debian/copyright ${DESPOOL_CHANGELOG}
  DESTINATION ${DESPOOL_DOC_DIR})
# /etc/despool: where the SITE.conf files go (the package ships none;
# the unit reads /etc/despool/SITE.conf whatever the prefix). Relative
# unless the prefix is /usr, so that cmake --install --prefix stays in it.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  install(DIRECTORY DESTINATION /etc/despool)
else()
  install(DIRECTORY DESTINATION ${CMAKE_INSTALL_SYSCONFDIR}/despool)
endif()

# The .deb.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME despool)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "despool maintainers <despool@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "package updates over Kafka into atomically switched versions")
# The extended description (CPack puts the summary above it).
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
  "Package updates travel as Kafka events keyed by package id: despooler
workers, one systemd service per site (despooler@SITE), turn them into
complete, verified versions in the site's content library, switched in
atomically; pkgpub publishes a version of a package from a directory or
a tar file in one Kafka transaction.")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${DESPOOL_PKG_DIR}/debian/postinst)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
# The package installs where cmake --install would (the unit names that
# bin directory): a Debian package wants -DCMAKE_INSTALL_PREFIX=/usr.
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(STATUS "The .deb (cpack) would install under "
    "${CMAKE_INSTALL_PREFIX}: configure with -DCMAKE_INSTALL_PREFIX=/usr "
    "for a Debian package")
endif()
set(CPACK_SOURCE_GENERATOR "")
include(CPack)
