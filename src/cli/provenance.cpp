#include "cli/provenance.h"

#include <Eigen/Core>
#include <CLI/Version.hpp>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <unistd.h>
#include <nlohmann/json.hpp>
#include <spdlog/version.h>
#include <toml++/toml.h>

#include "build_info.h"
#include "comm/mpi_communicator.h"
#include "results/h5_file.h"
#include "results/run_history.h"
#include "util/file_hash.h"
#include "util/logging.h"
#include "util/message.h"

namespace moetrace::cli {
namespace {
std::string g_command_line;

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

// Absolute and lexically normal ("a/../b" -> "b"); the path as given when that fails.
std::string absolute_path(const std::string& p) {
  std::error_code ec;
  const auto a = std::filesystem::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

std::string working_directory() {
  std::error_code ec;
  const auto cwd = std::filesystem::current_path(ec);
  return ec ? "?" : cwd.string();
}

}  // namespace

void set_command_line(int argc, char** argv) {
  g_command_line.clear();
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    const bool quote = a.empty() || a.find_first_of(" \t'\"$\\") != std::string::npos;
    g_command_line += (i ? " " : "") + (quote ? "'" + a + "'" : a);
  }
}

const std::string& command_line() { return g_command_line; }

std::string library_versions_json() {
  nlohmann::json j;
  j["moetrace"] = MOETRACE_VERSION;
  j["hdf5"] = h5::library_version();
  j["mpi"] = mpi_library_version();
  j["eigen"] = fmt::format("{}.{}.{}", EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION);
  j["fmt"] = FMT_VERSION;
  j["spdlog"] = fmt::format("{}.{}.{}", SPDLOG_VER_MAJOR, SPDLOG_VER_MINOR, SPDLOG_VER_PATCH);
  j["nlohmann_json"] = fmt::format("{}.{}.{}", NLOHMANN_JSON_VERSION_MAJOR, NLOHMANN_JSON_VERSION_MINOR, NLOHMANN_JSON_VERSION_PATCH);
  j["tomlplusplus"] = fmt::format("{}.{}.{}", TOML_LIB_MAJOR, TOML_LIB_MINOR, TOML_LIB_PATCH);
  j["cli11"] = CLI11_VERSION;
  j["compiler"] = __VERSION__;
  return j.dump();
}

Provenance collect_provenance(const std::string& config_path, const std::string& config_text, const Checkpoint& ckpt,
                              const std::string& backend, int ranks, const std::map<std::string, std::string>& known_sha256) {
  Provenance p;
  p.moetrace_version = MOETRACE_VERSION;
  p.git_commit = MOETRACE_GIT_COMMIT;
  p.command_line = g_command_line;
  p.config_path = absolute_path(config_path);
  p.config_text = config_text;
  p.created_utc = utc_now();
  p.model_path = ckpt.dir().string();
  nlohmann::json hashes;
  std::vector<std::filesystem::path> files = ckpt.files();
  for (const char* extra : {"config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json",
                            "tokenizer_config.json"})
    if (std::filesystem::exists(ckpt.dir() / extra)) files.push_back(ckpt.dir() / extra);
  std::size_t fresh = 0;
  for (const auto& f : files) fresh += known_sha256.count(f.filename().string()) ? 0 : 1;
  spdlog::info("hashing {} model files for provenance ({} more from the weight store)", fresh, files.size() - fresh);
  for (const auto& f : files) {
    const auto known = known_sha256.find(f.filename().string());
    hashes[f.filename().string()] = known != known_sha256.end() ? known->second : sha256_file(f);
  }
  p.model_files_sha256_json = hashes.dump();
  p.library_versions_json = library_versions_json();
  p.backend = backend;
  p.ranks = ranks;
  return p;
}

void record_run(ResultsFile& f, bool resume, const std::string& config_path, int ranks) {
  RunRecord r;
  r.kind = resume ? "resume" : "run";
  r.command_line = g_command_line;
  r.host = host_name();
  r.working_directory = working_directory();
  r.config_path = absolute_path(config_path);
  r.time_utc = utc_now();
  r.moetrace_version = MOETRACE_VERSION;
  r.git_commit = MOETRACE_GIT_COMMIT;
  r.ranks = ranks;
  if (!resume) f.set_working_directory(r.working_directory);
  append_run_record(f, r);
}

}  // namespace moetrace::cli
