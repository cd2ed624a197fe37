#pragma once
// Each subcommand lives in its own <name>_command.cpp and registers itself on the top-level app.
// The callback it installs does the work; errors propagate as moetrace::InputError and friends
// and are printed by main().
#include <CLI/CLI.hpp>

namespace moetrace::cli {

void register_replay_command(CLI::App& app);
void register_tokenize_command(CLI::App& app);
void register_run_command(CLI::App& app);
void register_localize_command(CLI::App& app);
void register_report_command(CLI::App& app);
void register_merge_command(CLI::App& app);
void register_store_command(CLI::App& app);
void register_plan_command(CLI::App& app);

}  // namespace moetrace::cli
