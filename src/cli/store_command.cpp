// `moetrace store`: build, verify, list and remove packed weight stores (docs/weights.md).
#include <sys/resource.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#include "backend/backend_registry.h"
#include "backend/weight_store_cache.h"
#include "cli/command_session.h"
#include "cli/commands.h"
#include "comm/communicator.h"
#include "protocols/run_config.h"
#include "protocols/toml_table_reader.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/logging.h"

namespace moetrace::cli {
namespace {

namespace fs = std::filesystem;

struct BuildOptions {
  std::string config, model, backend, weight_store;
  bool force = false;
};

// The [model] table of a run or localize config: path, backend and weight_store (relative paths
// against the config's folder). Other tables and keys are the commands' own business.
void read_model_section(BuildOptions& o) {
  const std::string text = read_input_file(o.config, "config file", limits::kMaxConfigBytes);
  const toml::table root = parse_toml(text, o.config);
  TableReader model(root["model"].as_table(), "model", o.config);
  const fs::path base = fs::path(o.config).has_parent_path() ? fs::path(o.config).parent_path() : fs::path(".");
  fs::path path, store;
  std::string backend;
  model.path("path", path, base);
  model.path("weight_store", store, base);
  model.string("backend", backend);
  if (o.model.empty()) o.model = path.string();
  if (o.weight_store.empty()) o.weight_store = store.string();
  if (o.backend.empty()) o.backend = backend;
  if (o.model.empty()) fail_input("{}: [model] path is required", o.config);
}

void build(BuildOptions o) {
  if (!o.config.empty()) read_model_section(o);
  if (o.backend.empty()) o.backend = "cpu";
  if (o.model.empty()) fail_input("store build: name a CONFIG.toml or --model DIR");
  if (o.weight_store.empty())
    fail_input("store build: no store folder: give --weight-store DIR or [model] weight_store in the config");
  check_backend_name(o.backend, "--backend");
  require_file_or_directory(o.model, "--model");
  const std::unique_ptr<Backend> backend = make_backend(o.backend);
  if (backend->weight_layout().empty()) fail_input("backend {} reads no weight store yet (docs/weights.md)", o.backend);
  LoadOptions load;
  load.scan_weights = false;  // the build scans every tensor and records the result
  const ModelWeights weights = load_model(o.model, load);
  const fs::path path = weight_store_path(o.weight_store, *weights.checkpoint, *backend);
  if (o.force) {
    fs::create_directories(o.weight_store);
    spdlog::info("weight store: building {} (--force)", path.string());
    build_weight_store(path, weights, *backend);
  }
  const StoreOpening s = open_weight_store(o.weight_store, weights, *backend, [&] { return make_backend(o.backend); });
  if (!s.built && !o.force) spdlog::info("weight store: {} is up to date; nothing to do (--force rebuilds it)", path.string());
  std::cout << s.store->path().string() << "\n";
}

// Loads the model as run and localize do (from the store when one is named) and reports the cost:
// the load's wall time, page faults and the peak resident set (docs/weights.md, "Measuring a load").
void load(BuildOptions o) {
  if (!o.config.empty()) read_model_section(o);
  if (o.backend.empty()) o.backend = "cpu";
  if (o.model.empty()) fail_input("store load: name a CONFIG.toml or --model DIR");
  check_backend_name(o.backend, "--backend");
  auto world = make_world_communicator();
  const auto t0 = std::chrono::steady_clock::now();
  struct rusage u0 {};
  ::getrusage(RUSAGE_SELF, &u0);
  CommandSession session(*world, {o.model, o.backend, o.weight_store, 1});
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = (u.ru_utime.tv_sec - u0.ru_utime.tv_sec) + (u.ru_stime.tv_sec - u0.ru_stime.tv_sec) +
                     1e-6 * ((u.ru_utime.tv_usec - u0.ru_utime.tv_usec) + (u.ru_stime.tv_usec - u0.ru_stime.tv_usec));
  std::cout << fmt::format("load_seconds={:.3f} cpu_seconds={:.3f} page_faults={} major_faults={} peak_rss_bytes={} "
                           "weight_bytes={}\n", secs, cpu, (u.ru_minflt + u.ru_majflt) - (u0.ru_minflt + u0.ru_majflt),
                           u.ru_majflt - u0.ru_majflt, static_cast<std::uint64_t>(u.ru_maxrss) * 1024,
                           session.backend().weight_bytes());
}

// The store files a path names: a store file, or every store in a folder.
std::vector<fs::path> stores_at(const std::string& where) {
  std::error_code ec;
  if (fs::is_directory(where, ec)) return list_store_files(where);
  if (!fs::exists(where, ec)) fail_input("{}: no such weight store or folder", where);
  return {where};
}

// "ok", or why the store cannot be used for its checkpoint and backend now.
std::string store_status(const WeightStoreFile& s) {
  try {
    const Checkpoint ckpt(s.identity().checkpoint_dir);
    std::unique_ptr<Backend> backend = make_backend(s.identity().backend);
    const std::string why = store_mismatch(s, ckpt, *backend);
    return why.empty() ? "ok" : "stale: " + why;
  } catch (const InputError& e) {
    return std::string("stale: ") + e.what();
  }
}

int verify(const std::vector<std::string>& paths) {
  int damaged = 0;
  for (const std::string& p : paths)
    for (const fs::path& f : stores_at(p)) {
      try {
        const WeightStoreFile s(f);
        s.verify();
        std::cout << f.string() << ": every byte checked (" << s.blobs().size() << " tensors, "
                  << fmt::format("{:.2f}", s.file_bytes() / 1e9) << " GB); " << store_status(s) << "\n";
      } catch (const InputError& e) {
        std::cout << f.string() << ": DAMAGED: " << e.what() << "\n";
        ++damaged;
      }
    }
  if (damaged) fail_input("{} damaged weight store(s): remove them (moetrace store rm) and build again", damaged);
  return 0;
}

void list(const std::string& dir) {
  const std::vector<fs::path> files = list_store_files(dir);
  std::cout << fmt::format("{:<60} {:>9} {:<9} {:<20} {}\n", "store", "GB", "backend", "built (UTC)", "status");
  for (const fs::path& f : files) {
    try {
      const WeightStoreFile s(f);
      std::cout << fmt::format("{:<60} {:>9.2f} {:<9} {:<20} {} (from {})\n", f.filename().string(), s.file_bytes() / 1e9,
                               s.identity().backend, s.built_utc(), store_status(s), s.identity().checkpoint_dir);
    } catch (const InputError& e) {
      std::cout << fmt::format("{:<60} {:>9} {:<9} {:<20} damaged: {}\n", f.filename().string(), "?", "?", "?", e.what());
    }
  }
  if (files.empty()) std::cout << "(no weight stores in " << dir << ")\n";
}

// Removes stores (unlink: a process that maps one keeps its pages until it ends) with their lock
// files and any temporary file a killed build left; --stale keeps the usable ones.
void remove(const std::vector<std::string>& paths, bool stale_only) {
  for (const std::string& p : paths)
    for (const fs::path& f : stores_at(p)) {
      if (stale_only) {
        std::string status;
        try {
          status = store_status(WeightStoreFile(f));
        } catch (const InputError& e) {
          status = e.what();
        }
        if (status == "ok") continue;
      }
      std::error_code ec;
      fs::remove(f, ec);
      if (ec) fail_input("cannot remove {}: {}", f.string(), ec.message());
      fs::remove(f.string() + ".lock", ec);
      for (const auto& e : fs::directory_iterator(f.parent_path().empty() ? "." : f.parent_path(), ec))
        if (e.path().filename().string().rfind(f.filename().string() + ".tmp.", 0) == 0) fs::remove(e.path(), ec);
      std::cout << "removed " << f.string() << "\n";
    }
}

}  // namespace

void register_store_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("store", "Build, verify, list and remove packed weight stores (docs/weights.md)");
  cmd->require_subcommand(1);
  cmd->footer(
      "A weight store holds a checkpoint's tensors already in the layout a backend computes with, one file per\n"
      "(checkpoint, backend, oneDNN version, CPU features). run, localize and replay map it read-only and\n"
      "use it in place when [model] weight_store = \"DIR\" or --weight-store DIR names its folder: a load\n"
      "costs about a memory map, every rank and job on a node shares one copy in the page cache, and models\n"
      "larger than memory run. The first command that needs a store builds it (under a lock: ranks and jobs\n"
      "that start at once build it once); a store built from other bytes (a checkpoint file replaced or\n"
      "rewritten, even with its times restored) or damaged is rebuilt, and the log says why.\n\n"
      "Examples:\n"
      "  moetrace store build configs/qwen3-30b-a3b.toml --weight-store /scratch/$USER/moetrace-store\n"
      "  moetrace store build --model /models/Mixtral-8x7B --backend cpu-bf16 --weight-store /local/store\n"
      "  moetrace store ls /local/store\n"
      "  moetrace store load configs/qwen3-30b-a3b.toml   # what a load costs: time, page faults, peak RSS\n"
      "  moetrace store verify /local/store      # reads every byte; exit 2 when a store is damaged\n"
      "  moetrace store rm /local/store --stale  # remove stores that no longer fit their checkpoint");

  auto b = std::make_shared<BuildOptions>();
  CLI::App* bc = cmd->add_subcommand("build", "Build (or bring up to date) the store of a model for a backend");
  bc->add_option("CONFIG", b->config, "a run or localize config: its [model] path, backend and weight_store");
  bc->add_option("--model", b->model, "model folder (instead of, or overriding, the config's)");
  bc->add_option("--backend", b->backend, "cpu or cpu-bf16 (default: the config's, else cpu)");
  bc->add_option("--weight-store", b->weight_store, "DIR: the store folder (overrides the config's)");
  bc->add_flag("--force", b->force, "rebuild even when the store is up to date");
  bc->callback([b] { build(*b); });

  auto l = std::make_shared<BuildOptions>();
  CLI::App* ld = cmd->add_subcommand("load", "Load a model as run does and print what the load cost (time, page faults, peak RSS)");
  ld->add_option("CONFIG", l->config, "a run or localize config: its [model] path, backend and weight_store");
  ld->add_option("--model", l->model, "model folder (instead of, or overriding, the config's)");
  ld->add_option("--backend", l->backend, "cpu or cpu-bf16 (default: the config's, else cpu)");
  ld->add_option("--weight-store", l->weight_store, "DIR: load through the store there (built first if needed); "
                                                     "without it (and without the config's): from the checkpoint");
  ld->callback([l] { load(*l); });

  auto paths = std::make_shared<std::vector<std::string>>();
  CLI::App* vc = cmd->add_subcommand("verify", "Read every byte of stores and check them against their checksums");
  vc->add_option("PATH", *paths, "store files or folders")->required();
  vc->callback([paths] { verify(*paths); });

  auto dir = std::make_shared<std::string>();
  CLI::App* lc = cmd->add_subcommand("ls", "List the stores of a folder: size, backend, build time, status");
  lc->add_option("DIR", *dir, "store folder")->required();
  lc->callback([dir] { list(*dir); });

  auto rm_paths = std::make_shared<std::vector<std::string>>();
  auto stale = std::make_shared<bool>(false);
  CLI::App* rc = cmd->add_subcommand("rm", "Remove stores (files or every store of a folder)");
  rc->add_option("PATH", *rm_paths, "store files or folders")->required();
  rc->add_flag("--stale", *stale, "only stores that are damaged or no longer fit their checkpoint");
  rc->callback([rm_paths, stale] { remove(*rm_paths, *stale); });
}

}  // namespace moetrace::cli
