# Every third-party dependency comes from Debian's packages (see .ci/install-deps).
# PCRE2, utf8proc, fmt and spdlog are linked statically or used header-only so that a binary
# built here runs on machines that lack them (the GPU machine does).
find_package(Threads REQUIRED)
find_package(Eigen3 3.4 REQUIRED NO_MODULE)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(MPI REQUIRED COMPONENTS CXX)
set(HDF5_PREFER_PARALLEL OFF)
find_package(HDF5 REQUIRED COMPONENTS C)
find_package(Boost 1.74 REQUIRED COMPONENTS unit_test_framework)
find_package(PkgConfig REQUIRED)
pkg_check_modules(TOMLPLUSPLUS REQUIRED IMPORTED_TARGET tomlplusplus)

find_library(PCRE2_STATIC_LIB NAMES libpcre2-8.a REQUIRED)
find_path(PCRE2_INCLUDE_DIR pcre2.h REQUIRED)
add_library(moetrace_pcre2 INTERFACE)
target_include_directories(moetrace_pcre2 INTERFACE ${PCRE2_INCLUDE_DIR})
target_compile_definitions(moetrace_pcre2 INTERFACE PCRE2_CODE_UNIT_WIDTH=8 PCRE2_STATIC)
target_link_libraries(moetrace_pcre2 INTERFACE ${PCRE2_STATIC_LIB})

find_library(UTF8PROC_STATIC_LIB NAMES libutf8proc.a REQUIRED)
find_path(UTF8PROC_INCLUDE_DIR utf8proc.h REQUIRED)
add_library(moetrace_utf8proc INTERFACE)
target_include_directories(moetrace_utf8proc INTERFACE ${UTF8PROC_INCLUDE_DIR})
target_compile_definitions(moetrace_utf8proc INTERFACE UTF8PROC_STATIC)
target_link_libraries(moetrace_utf8proc INTERFACE ${UTF8PROC_STATIC_LIB})

# fmt and spdlog header-only: Debian ships them only as shared libraries.
find_path(FMT_INCLUDE_DIR fmt/format.h REQUIRED)
find_path(SPDLOG_INCLUDE_DIR spdlog/spdlog.h REQUIRED)
add_library(moetrace_logging INTERFACE)
target_include_directories(moetrace_logging INTERFACE ${FMT_INCLUDE_DIR} ${SPDLOG_INCLUDE_DIR})
target_compile_definitions(moetrace_logging INTERFACE FMT_HEADER_ONLY SPDLOG_FMT_EXTERNAL)
target_link_libraries(moetrace_logging INTERFACE Threads::Threads)

add_library(moetrace_hdf5 INTERFACE)
target_include_directories(moetrace_hdf5 INTERFACE ${HDF5_C_INCLUDE_DIRS} ${HDF5_INCLUDE_DIRS})
target_compile_definitions(moetrace_hdf5 INTERFACE ${HDF5_C_DEFINITIONS} ${HDF5_DEFINITIONS})
target_link_libraries(moetrace_hdf5 INTERFACE ${HDF5_C_LIBRARIES})

find_package(OpenMP)
# oneDNN (libdnnl-dev): the CPU backend's matrix products, with weights packed once into its
# blocked layout and bf16 products on AVX512_BF16/AMX; it picks its kernels at run time.
# Debian's dnnl-config.cmake insists on OpenCL (its build enables the GPU runtime), which the CPU
# backend never uses, so the library is found directly.
find_library(DNNL_LIBRARY NAMES dnnl REQUIRED)
find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.hpp REQUIRED)
add_library(moetrace_dnnl INTERFACE)
target_include_directories(moetrace_dnnl INTERFACE ${DNNL_INCLUDE_DIR})
target_link_libraries(moetrace_dnnl INTERFACE ${DNNL_LIBRARY})
