#pragma once
// Reading input files as hostile data: only regular files are opened (a FIFO would block forever,
// a directory or a symlink loop is a clear error), their size is bounded, and every failure is an
// InputError naming what the file is (a config key, an option) and its path.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace moetrace {

// Throws InputError "<what> <path>: <problem>" unless `path` names an existing regular file
// (symlinks are followed). `what` names where the path came from, e.g. "[data] counterfact" or
// "config file".
void require_regular_file(const std::filesystem::path& path, const std::string& what);

// Throws InputError unless `path` names an existing folder or regular file (a model folder or one
// of its files); a symlink loop or a FIFO is named as such.
void require_file_or_directory(const std::filesystem::path& path, const std::string& what);

// The whole file, after the checks of require_regular_file, refusing files over max_bytes.
std::string read_input_file(const std::filesystem::path& path, const std::string& what, std::uint64_t max_bytes);

// A value quoted in an error message: at most max_chars bytes (cut at a UTF-8 boundary), followed by
// "... (N bytes)" when cut, so that a 10 MB input never floods the terminal.
std::string shorten(std::string_view value, std::size_t max_chars = 80);

}  // namespace moetrace
