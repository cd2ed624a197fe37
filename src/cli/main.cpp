// moetrace: expert-aware causal tracing of factual recall in sparse mixture-of-experts models.
#include <cstdio>
#include <exception>
#include <filesystem>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "comm/mpi_communicator.h"
#include "cli/provenance.h"
#include "util/error.h"
#include "util/logging.h"
#include "util/stop_signal.h"

int main(int argc, char** argv) {
  // MPI_Init_thread here when a launcher (mpirun, srun) started us, MPI_Finalize on return; a plain
  // one-process run needs no MPI runtime (comm/mpi_communicator.h).
  moetrace::MpiSession mpi(&argc, &argv, moetrace::MpiSession::Start::WhenLaunched);
  CLI::App app{
      "moetrace: expert-aware causal tracing of factual recall in mixture-of-experts models.\n"
      "Loads Hugging Face checkpoints (Mixtral, Qwen3-MoE, OLMoE), corrupts subject embeddings,\n"
      "restores hidden states, attention / MoE outputs and single experts, and reports which\n"
      "layers and experts carry a fact. See README.md and docs/ for the protocol and file layouts."};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str();
  app.set_version_flag("--version", "moetrace 0.1.0");
  moetrace::cli::set_command_line(argc, argv);
  moetrace::cli::register_run_command(app);
  moetrace::cli::register_localize_command(app);
  moetrace::cli::register_report_command(app);
  moetrace::cli::register_merge_command(app);
  moetrace::cli::register_replay_command(app);
  moetrace::cli::register_tokenize_command(app);
  moetrace::cli::register_store_command(app);
  moetrace::cli::register_plan_command(app);
  app.parse_complete_callback([&] { moetrace::configure_logging(log_level); });
  try {
    app.parse(argc, argv);
    // Done: every result saved. A stop signal from here on ends the run as done (exit 0).
    moetrace::test_pause_point("done");
  } catch (const CLI::ParseError& e) {
    // --help and --version end with 0; a bad command line is bad input: exit 2, as documented.
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const moetrace::StopRequested& e) {
    std::fprintf(stderr, "moetrace: %s (%s)\n", e.what(), moetrace::stop_reason().c_str());
    return moetrace::kExitStopped;
  } catch (const moetrace::InputError& e) {
    std::fprintf(stderr, "moetrace: error: %s\n", e.what());
    return 2;
  } catch (const std::filesystem::filesystem_error& e) {
    // A path the user gave that the filesystem refused (the message names it).
    std::fprintf(stderr, "moetrace: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moetrace: internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}
