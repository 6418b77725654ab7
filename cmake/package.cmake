# The installable libfetchq: headers, libfetchq.a, a CMake package (find_package(fetchq CONFIG)
# gives fetchq::fetchq) and fetchq.pc. Included from the top-level CMakeLists.txt after src/, so
# the source lists stay where they are; examples/ builds against what this installs.
include(CMakePackageConfigHelpers)

set(FETCHQ_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/fetchq)

# fetchq_core is the whole library (store, transfer engine, queue): installed as libfetchq.a and
# known outside as fetchq::fetchq. Inside the tree fetchq_core and fetchq::fetchq are the same.
set_target_properties(fetchq_core PROPERTIES OUTPUT_NAME fetchq EXPORT_NAME fetchq)
add_library(fetchq::fetchq ALIAS fetchq_core)

install(TARGETS fetchq_core EXPORT fetchqTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/fetchq DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")
install(EXPORT fetchqTargets NAMESPACE fetchq:: DESTINATION ${FETCHQ_CMAKE_DIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/fetchqConfig.cmake.in
  ${PROJECT_BINARY_DIR}/fetchqConfig.cmake INSTALL_DESTINATION ${FETCHQ_CMAKE_DIR})
# 0.x: a minor version may change the API, so only the same major.minor is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/fetchqConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/fetchqConfig.cmake ${PROJECT_BINARY_DIR}/fetchqConfigVersion.cmake
  DESTINATION ${FETCHQ_CMAKE_DIR})

# pkg-config: the prefix is written at install time, so `cmake --install --prefix DIR` gives a
# fetchq.pc that points into DIR; relative GNUInstallDirs are kept relative to ${prefix}.
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(FETCHQ_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(FETCHQ_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
set(FETCHQ_PC_PREFIX "@FETCHQ_PC_PREFIX@")  # left for the install step below
configure_file(${PROJECT_SOURCE_DIR}/cmake/fetchq.pc.in ${PROJECT_BINARY_DIR}/fetchq.pc.in @ONLY)
install(CODE "
  set(FETCHQ_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  configure_file(\"${PROJECT_BINARY_DIR}/fetchq.pc.in\" \"${PROJECT_BINARY_DIR}/fetchq.pc\" @ONLY)")
install(FILES ${PROJECT_BINARY_DIR}/fetchq.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
