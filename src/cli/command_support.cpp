#include "cli/command_support.h"

#include <charconv>
#include <filesystem>

#include "cli/command_session.h"
#include "cli/provenance.h"
#include "comm/errors.h"
#include "protocols/distributed_row_executor.h"
#include "util/error.h"
#include "util/logging.h"
#include "util/stop_signal.h"

namespace moetrace::cli {

bool start_ranks(Communicator& world, int ep, const std::string& stop_file) {
  install_stop_handlers();
  watch_stop_file(stop_file);
  return check_ranks(world, ep);
}

std::string prepare_output_on_writer(Communicator& world, bool writer, const std::string& out,
                                     const std::string& config, bool resume, std::optional<OutputLock>& lock) {
  const std::string path = out.empty() ? default_output(config) : out;
  on_every_rank(world, [&] {
    if (writer) prepare_output(path, resume, lock);
    return 0;
  });
  return path;
}

std::string default_output(const std::string& config) {
  return (std::filesystem::path("results") / (std::filesystem::path(config).stem().string() + ".h5")).string();
}

void prepare_output(const std::string& out, bool resume, std::optional<OutputLock>& lock) {
  const std::filesystem::path parent = std::filesystem::path(out).parent_path();
  std::error_code ec;
  if (!parent.empty()) {
    std::filesystem::create_directories(parent, ec);
    if (ec || !std::filesystem::is_directory(parent))
      fail_input("--out {}: cannot create its folder {}: {}", out, parent.string(),
                 ec ? ec.message() : std::string("a file of that name is in the way"));
  }
  const auto type = std::filesystem::symlink_status(out, ec).type();
  if (type != std::filesystem::file_type::not_found && type != std::filesystem::file_type::regular &&
      !(type == std::filesystem::file_type::symlink && std::filesystem::is_regular_file(out, ec)))
    fail_input("--out {} exists and is not a regular file", out);
  lock.emplace(out);
  ResultsFile::check_can_open(out, resume ? ResultsFile::Mode::Resume : ResultsFile::Mode::Create);
}

std::unique_ptr<ResultsFile> open_results_file(Communicator& world, const std::string& out, bool resume,
                                               const std::string& config_path, const std::string& config_text,
                                               const std::function<Provenance()>& provenance,
                                               const std::function<void(ResultsFile&)>& prepare) {
  return on_every_rank(world, [&] {
    if (world.rank() != 0)
      return std::make_unique<ResultsFile>(fmt::format("scratch-rank-{}.h5", world.rank()), ResultsFile::Mode::Scratch);
    auto f = std::make_unique<ResultsFile>(out, resume ? ResultsFile::Mode::Resume : ResultsFile::Mode::Create);
    if (resume) {
      if (f->stored_config_text() != config_text)
        fail_input("--resume: the config stored in {} differs from {}; resume with the same config", out, config_path);
      spdlog::info("resuming {}", out);
    } else {
      f->write_provenance(provenance());
    }
    if (prepare) prepare(*f);
    record_run(*f, resume, config_path, world.size());
    return f;
  });
}

std::unique_ptr<RowExecutor> make_row_executor(Communicator& world, Communicator& group, Communicator& leaders,
                                               ResultsFile& results, int chunk_tokens, double progress_every_s,
                                               double checkpoint_every_s) {
  // Between chunks: save on schedule; a stop signal ends the run with everything computed so far saved.
  // The test pause point "chunk" (util/stop_signal.h): after the save, before the check for a stop.
  auto checkpoint = [&results, checkpoint_every_s] {
    results.flush_if_due(checkpoint_every_s);
    test_pause_point("chunk");
  };
  if (world.size() == 1)
    return std::make_unique<LocalRowExecutor>(results, chunk_tokens, progress_every_s, [&results, checkpoint] {
      checkpoint();
      if (stop_requested()) {
        results.flush();
        throw StopRequested();
      }
    });
  return std::make_unique<DistributedRowExecutor>(world, group, leaders, results, chunk_tokens, progress_every_s, checkpoint);
}

std::optional<CaseShard> parse_shard(const std::string& text) {
  if (text.empty()) return std::nullopt;
  const auto slash = text.find('/');
  auto number = [&](std::size_t begin, std::size_t end, int& v) {
    const char* first = text.data() + begin;
    const char* last = text.data() + end;
    const auto r = std::from_chars(first, last, v);
    return begin < end && r.ec == std::errc() && r.ptr == last;
  };
  CaseShard s;
  if (slash == std::string::npos || !number(0, slash, s.index) || !number(slash + 1, text.size(), s.count))
    fail_input("--shard {}: expected i/n, the shard index i and the number of shards n, decimal integers below "
               "2^31 (for example 0/4)", text);
  if (s.count < 1 || s.index < 0 || s.index >= s.count)
    fail_input("--shard {}: the shard index must be at least 0 and below the number of shards ({}), which must be "
               "at least 1", text, s.count);
  return s;
}

void record_shard(ResultsFile& f, const std::optional<CaseShard>& shard) {
  if (shard || f.shard()) f.set_shard(shard ? fmt::format("{}/{}", shard->index, shard->count) : "all");
}

}  // namespace moetrace::cli
