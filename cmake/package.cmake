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

# FETCHQ_SHARED: the same objects also make libfetchq.so, known outside as fetchq::fetchq_shared.
# Its dependencies stay inside it (SQLiteCpp, a static library, is linked into it), except
# nlohmann_json, whose json_fwd.hpp the public headers include. 0.x: the soname carries
# major.minor, as the package version's compatibility does.
if(FETCHQ_SHARED)
  # Only what include/fetchq/ marks FETCHQ_API is exported (fetchq/export.h); the rest of
  # the library, and the inline code of its dependencies, stays inside it.
  set_target_properties(fetchq_core PROPERTIES POSITION_INDEPENDENT_CODE ON
    CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  add_library(fetchq_shared SHARED $<TARGET_OBJECTS:fetchq_core>)
  add_library(fetchq::fetchq_shared ALIAS fetchq_shared)
  set_target_properties(fetchq_shared PROPERTIES OUTPUT_NAME fetchq EXPORT_NAME fetchq_shared
    VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
  target_include_directories(fetchq_shared PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  # The static libraries linked in (SQLiteCpp) keep their symbols to themselves: a program
  # with its own SQLiteCpp must not take over libfetchq's calls, nor libfetchq its.
  target_link_options(fetchq_shared PRIVATE -Wl,--exclude-libs,ALL)
  if(NOT FETCHQ_SANITIZE)  # a sanitizer's runtime is linked into programs, not libraries
    target_link_options(fetchq_shared PRIVATE -Wl,--no-undefined)  # every dependency is linked
  endif()
  target_link_libraries(fetchq_shared
    PUBLIC nlohmann_json::nlohmann_json
    PRIVATE SQLiteCpp sqlite3 CURL::libcurl spdlog::spdlog OpenSSL::Crypto Threads::Threads)
  # An export set of its own: a program that asks only for the shared library
  # (COMPONENTS shared) needs none of the static library's dependencies.
  install(TARGETS fetchq_shared EXPORT fetchqSharedTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(EXPORT fetchqSharedTargets NAMESPACE fetchq:: DESTINATION ${FETCHQ_CMAKE_DIR})
endif()
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
