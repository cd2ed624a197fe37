// Hostile input through the real CLI (issue 12): every case here is a reproducer that once ended
// with a wrong result, exit 3, exit 105 or a hang, and must now be exit 2 naming the file and key,
// or (damaged results) refuse to resume.
#define BOOST_TEST_MODULE cli_hardening
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <bit>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>

#include <hdf5.h>
#include <nlohmann/json.hpp>

#include "results/journal.h"
#include "support/cli_runner.h"
#include "support/safetensors_writer.h"
#include "support/test_paths.h"

namespace fs = std::filesystem;
using namespace moetrace::test;

namespace {

struct Workspace {
  fs::path dir, counterfact, config;
  Workspace() {
    dir = fresh_temp_dir("cli-hardening");
    // The first four demo records: a discovery and a validation split, a run of seconds.
    const auto all = nlohmann::json::parse(slurp(source_dir() / "demo/counterfact_demo.json"));
    counterfact = dir / "cf.json";
    std::ofstream(counterfact) << nlohmann::json(std::vector<nlohmann::json>(all.begin(), all.begin() + 4)).dump();
    config = write_config("run.toml", "");
  }
  fs::path write_config(const std::string& name, const std::string& extra, const std::string& cf = "") const {
    std::ofstream(dir / name) << "[model]\npath = \"" << (source_dir() / "demo/model").string() << "\"\n"
                              << "[data]\ncounterfact = \"" << (cf.empty() ? counterfact.string() : cf)
                              << "\"\nobject_rule = \"leading_space\"\n"
                              << "[cases]\nn = 0\n[statistics]\nbootstrap = 100\nsign_flips = 100\n"
                              << "[run]\ncheckpoint_every_s = 0\n" << extra;
    return dir / name;
  }
  // Runs moetrace with args; returns the exit code, the output in `out`.
  int run(const std::vector<std::string>& args, std::string& out) const {
    const fs::path log = dir / "cli.log";
    fs::remove(log);
    const int rc = run_to_end(moetrace_command(args), log);
    out = slurp(log);
    return rc;
  }
};

Workspace& ws() {
  static Workspace w;
  return w;
}

void expect_exit_2(const std::vector<std::string>& args, std::initializer_list<std::string> fragments) {
  std::string out;
  const int rc = ws().run(args, out);
  BOOST_TEST(rc == 2, "exit " << rc << " for " << args[0] << " " << (args.size() > 1 ? args[1] : "") << ": " << out);
  for (const auto& f : fragments) BOOST_TEST(out.find(f) != std::string::npos, "'" << f << "' not in: " << out);
}

// Offset of the first chunk of a chunked dataset in the file (HDF5's own index).
// Where in the file the first chunk of `dataset` starts (HDF5's chunk index gives addresses from the
// superblock, which a sealed file has after its 512-byte user block).
haddr_t chunk_offset(const fs::path& file, const char* dataset, hsize_t* size) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t fcpl = H5Fget_create_plist(f);
  hsize_t userblock = 0;
  H5Pget_userblock(fcpl, &userblock);
  H5Pclose(fcpl);
  hid_t d = H5Dopen2(f, dataset, H5P_DEFAULT);
  hsize_t offset[1] = {0};
  unsigned mask = 0;
  haddr_t addr = HADDR_UNDEF;
  H5Dget_chunk_info_by_coord(d, offset, &mask, &addr, size);
  H5Dclose(d);
  H5Fclose(f);
  return addr == HADDR_UNDEF ? addr : addr + userblock;
}

herr_t copy_link(hid_t src, const char* name, const H5L_info_t*, void* dst) {
  return H5Ocopy(src, name, *static_cast<hid_t*>(dst), name, H5P_DEFAULT, H5P_DEFAULT);
}

// A copy of a results file without the whole-file seal, as moetrace wrote them before it had one:
// only the per-dataset checksums protect it.
void unsealed_copy(const fs::path& from, const fs::path& to) {
  hid_t src = H5Fopen(from.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t dst = H5Fcreate(to.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  BOOST_TEST_REQUIRE(src >= 0);
  BOOST_TEST_REQUIRE(dst >= 0);
  BOOST_TEST_REQUIRE(H5Literate(src, H5_INDEX_NAME, H5_ITER_INC, nullptr, copy_link, &dst) >= 0);
  H5Fclose(dst);
  H5Fclose(src);
}

void overwrite(const fs::path& file, std::streamoff at, const std::string& bytes) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(at);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

BOOST_AUTO_TEST_CASE(missing_files_are_exit_2_for_every_subcommand) {
  const std::string nope = (ws().dir / "nope").string();
  expect_exit_2({"run", nope + ".toml"}, {"nope.toml", "does not exist"});
  expect_exit_2({"report", nope + ".h5"}, {"nope.h5"});
  expect_exit_2({"replay", "--model", (fixtures_dir() / "qwen3moe-tiny").string(), "--in", nope + ".h5", "--out",
                 (ws().dir / "o.h5").string()}, {"nope.h5"});
  expect_exit_2({"replay", "--model", nope, "--in", (fixtures_dir() / "qwen3moe-tiny.golden.h5").string(), "--out",
                 (ws().dir / "o.h5").string()}, {"--model", nope});
  expect_exit_2({"tokenize", "--tokenizer", nope, "--input", nope + ".json"}, {"--tokenizer", nope});
  expect_exit_2({"tokenize", "--tokenizer", (source_dir() / "demo/model").string(), "--input", nope + ".json"},
                {"--input", "nope.json"});
  // A bad command line is bad input too (CLI11 would exit 105-109).
  expect_exit_2({"run"}, {"CONFIG"});
  expect_exit_2({"no-such-subcommand"}, {});
  std::string out;
  BOOST_TEST(ws().run({"--help"}, out) == 0);
}

BOOST_AUTO_TEST_CASE(inputs_must_be_regular_files) {
  const fs::path dir = ws().dir;
  expect_exit_2({"run", ws().write_config("dir.toml", "", "/tmp").string(), "--out", (dir / "o.h5").string()},
                {"dir.toml", "[data] counterfact", "/tmp", "directory"});
  const fs::path fifo = dir / "fifo.json";
  fs::remove(fifo);
  BOOST_TEST_REQUIRE(mkfifo(fifo.c_str(), 0644) == 0);
  expect_exit_2({"run", ws().write_config("fifo.toml", "", fifo.string()).string(), "--out", (dir / "o.h5").string()},
                {"[data] counterfact", "fifo.json", "FIFO"});
  fs::remove(dir / "loop1");
  fs::remove(dir / "loop2");
  fs::create_symlink(dir / "loop2", dir / "loop1");
  fs::create_symlink(dir / "loop1", dir / "loop2");
  expect_exit_2({"run", ws().write_config("loop.toml", "", (dir / "loop1").string()).string(), "--out",
                 (dir / "o.h5").string()}, {"[data] counterfact", "loop1", "symbolic links"});
  expect_exit_2({"run", (dir / "loop1").string()}, {"config file", "loop1"});
  expect_exit_2({"run", dir.string()}, {"config file", "directory"});
  // --out under a regular file.
  expect_exit_2({"run", ws().config.string(), "--out", (ws().config / "x.h5").string()}, {"--out", "run.toml"});
  BOOST_TEST(!fs::exists(dir / "o.h5"));
}

BOOST_AUTO_TEST_CASE(config_numbers_are_range_checked_before_narrowing) {
  const fs::path out = ws().dir / "o.h5";
  auto check = [&](const std::string& config_text, std::initializer_list<std::string> fragments) {
    std::ofstream(ws().dir / "bad.toml") << config_text;
    expect_exit_2({"run", (ws().dir / "bad.toml").string(), "--out", out.string()}, fragments);
  };
  const std::string head = "[model]\npath = \"" + (source_dir() / "demo/model").string() + "\"\n[data]\ncounterfact = \"" +
                           ws().counterfact.string() + "\"\n";
  check(head + "[statistics]\nbootstrap = 4294967346\n", {"bad.toml", "[statistics] bootstrap", "4294967346"});
  check(head + "[cases]\nn = 2147483648\n", {"[cases] n", "2147483648"});
  check(head + "[noise]\nmultiplier = nan\n", {"[noise] multiplier", "nan"});
  check(head + "[experts]\ncandidate_threshold = nan\n", {"[experts] candidate_threshold", "nan"});
  check(head + "[noise]\nsamples = 1000000000\n", {"[noise] samples", "1000"});
  check(head + "[statistics]\nsign_flips = 1000000000000\n", {"[statistics] sign_flips"});
  check(head + "[robustness]\nnoise_multipliers = [1.0, nan]\n", {"[robustness] noise_multipliers", "nan"});
  check(head + "[robustness]\nsplit_seeds = [-3]\n", {"[robustness] split_seeds", "-3"});
  check(head + "[layer_sweep]\nsite = \"" + std::string(100000, 'x') + "\"\n", {"[layer_sweep] site", "bytes"});
  BOOST_TEST(slurp(ws().dir / "cli.log").size() < 2000, "long values are shortened in messages");
  BOOST_TEST(!fs::exists(out));
}

BOOST_AUTO_TEST_CASE(a_huge_counterfact_prompt_fails_fast_naming_the_record) {
  const fs::path cf = ws().dir / "huge.json";
  std::string prompt = "The official language of {} is";
  prompt.append(10'000'000, 'x');
  std::ofstream(cf) << R"([{"case_id": 5, "requested_rewrite": {"prompt": ")" << prompt
                    << R"(", "subject": "A", "target_true": {"str": "B"}, "target_new": {"str": "C"}}}])";
  const auto t0 = std::chrono::steady_clock::now();
  expect_exit_2({"run", ws().write_config("huge.toml", "", cf.string()).string(), "--out",
                 (ws().dir / "o.h5").string()}, {"huge.json", "record 0", "case_id 5", "prompt", "bytes"});
  BOOST_TEST_MESSAGE("rejected in " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
                                    << " s");
  BOOST_TEST(slurp(ws().dir / "cli.log").size() < 2000, "the prompt is not echoed whole");
  const fs::path big_id = ws().dir / "bigid.json";
  std::ofstream(big_id) << R"([{"case_id": 18446744073709551615, "requested_rewrite": {"prompt": "{} is", "subject": "A", "target_true": {"str": "B"}, "target_new": {"str": "C"}}}])";
  expect_exit_2({"run", ws().write_config("bigid.toml", "", big_id.string()).string(), "--out",
                 (ws().dir / "o.h5").string()}, {"bigid.json", "case_id", "int64"});
  const fs::path overflow = ws().dir / "overflow.json";
  std::ofstream(overflow) << R"([{"case_id": 1e400}])";
  expect_exit_2({"run", ws().write_config("overflow.toml", "", overflow.string()).string(), "--out",
                 (ws().dir / "o.h5").string()}, {"overflow.json"});
}

BOOST_AUTO_TEST_CASE(replay_checks_deactivations_and_ids_against_the_model) {
  // Every expert of layer 1 deactivated but k - 1 (the qwen3moe-tiny model routes to 4 of 16).
  const fs::path in = ws().dir / "deactivate.h5";
  fs::copy_file(fixtures_dir() / "qwen3moe-tiny.golden.h5", in, fs::copy_options::overwrite_existing);
  fs::permissions(in, fs::perms::owner_read | fs::perms::owner_write);
  {
    hid_t f = H5Fopen(in.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    BOOST_TEST_REQUIRE(f >= 0);
    if (H5Lexists(f, "facts/0/deactivate/experts", H5P_DEFAULT) > 0) H5Ldelete(f, "facts/0/deactivate/experts", H5P_DEFAULT);
    long long pairs[13][2];
    for (int e = 0; e < 13; ++e) pairs[e][0] = 1, pairs[e][1] = e;
    hsize_t dims[2] = {13, 2};
    hid_t space = H5Screate_simple(2, dims, nullptr);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = H5Dcreate2(f, "facts/0/deactivate/experts", H5T_STD_I64LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    BOOST_TEST_REQUIRE(d >= 0);
    H5Dwrite(d, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, pairs);
    H5Dclose(d);
    H5Pclose(lcpl);
    H5Sclose(space);
    H5Fclose(f);
  }
  expect_exit_2({"replay", "--model", (fixtures_dir() / "qwen3moe-tiny").string(), "--in", in.string(), "--out",
                 (ws().dir / "replayed.h5").string()},
                {"deactivate.h5", "facts/0", "layer 1", "fewer than the 4"});
}

BOOST_AUTO_TEST_CASE(a_damaged_results_file_is_never_resumed) {
  const fs::path good = ws().dir / "good.h5";
  std::string out;
  BOOST_TEST_REQUIRE(ws().run({"run", ws().config.string(), "--out", good.string()}, out) == 0, out);
  BOOST_TEST(!fs::exists(good.string() + ".lock"), "the lock file goes with the run");
  BOOST_TEST(slurp(good).rfind("MOETRACE-SEALED1", 0) == 0, "the file starts with its seal");
  // A few bytes overwritten inside /cases/d_noised's chunk (found through HDF5's chunk index): the
  // whole-file checksum catches it before HDF5 reads anything.
  hsize_t size = 0;
  const haddr_t at = chunk_offset(good, "/cases/d_noised", &size);
  BOOST_TEST_REQUIRE(at != HADDR_UNDEF);
  BOOST_TEST_REQUIRE(size >= 8u);
  const fs::path damaged = ws().dir / "damaged.h5";
  fs::copy_file(good, damaged, fs::copy_options::overwrite_existing);
  overwrite(damaged, static_cast<std::streamoff>(at + 2), "\x7f\xf0\x12\x34");
  const std::string before = slurp(damaged);
  expect_exit_2({"run", ws().config.string(), "--out", damaged.string(), "--resume"},
                {"damaged.h5", "damaged", "checksum does not match", "afresh"});
  BOOST_TEST((slurp(damaged) == before), "the damaged file is left as it was");
  expect_exit_2({"report", damaged.string()}, {"damaged.h5", "checksum does not match"});
  // Damage to the seal itself, and a truncated file.
  const fs::path seal_damaged = ws().dir / "seal_damaged.h5";
  fs::copy_file(good, seal_damaged, fs::copy_options::overwrite_existing);
  overwrite(seal_damaged, 20, "\x01");
  expect_exit_2({"report", seal_damaged.string()}, {"seal_damaged.h5", "seal is damaged"});
  overwrite(seal_damaged, 0, "X");
  expect_exit_2({"report", seal_damaged.string()}, {"seal_damaged.h5", "not moetrace's"});
  const fs::path truncated = ws().dir / "truncated.h5";
  fs::copy_file(good, truncated, fs::copy_options::overwrite_existing);
  fs::resize_file(truncated, fs::file_size(good) - 100);
  expect_exit_2({"report", truncated.string()}, {"truncated.h5", "bytes where"});

  // A file without the seal (older versions): the per-dataset checksums still name what is damaged.
  const fs::path legacy = ws().dir / "legacy.h5";
  unsealed_copy(good, legacy);
  BOOST_TEST(slurp(legacy).rfind("MOETRACE-SEALED1", 0) != 0);
  const fs::path legacy_damaged = ws().dir / "legacy_damaged.h5";
  fs::copy_file(legacy, legacy_damaged, fs::copy_options::overwrite_existing);
  const haddr_t legacy_at = chunk_offset(legacy, "/cases/d_noised", &size);
  BOOST_TEST_REQUIRE(legacy_at != HADDR_UNDEF);
  overwrite(legacy_damaged, static_cast<std::streamoff>(legacy_at + 2), "\x7f\xf0\x12\x34");
  expect_exit_2({"run", ws().config.string(), "--out", legacy_damaged.string(), "--resume"},
                {"legacy_damaged.h5", "/cases/d_noised", "damaged", "fresh run"});
  expect_exit_2({"report", legacy_damaged.string()}, {"legacy_damaged.h5", "/cases/d_noised", "damaged"});
  // A string dataset's values live outside the chunk: their CRC-32 catches damage there too.
  const std::string bytes = slurp(legacy);
  const auto prompt = bytes.find("The official language of");
  BOOST_TEST_REQUIRE(prompt != std::string::npos);
  const fs::path text_damaged = ws().dir / "text_damaged.h5";
  fs::copy_file(legacy, text_damaged, fs::copy_options::overwrite_existing);
  overwrite(text_damaged, static_cast<std::streamoff>(prompt + 4), "X");
  expect_exit_2({"run", ws().config.string(), "--out", text_damaged.string(), "--resume"},
                {"text_damaged.h5", "damaged"});
  // The undamaged files resume (nothing left to do) to exit 0; the legacy one with a warning (it
  // stays unsealed: HDF5 cannot put a user block in front of an existing file).
  BOOST_TEST(ws().run({"run", ws().config.string(), "--out", good.string(), "--resume"}, out) == 0, out);
  BOOST_TEST(ws().run({"run", ws().config.string(), "--out", legacy.string(), "--resume"}, out) == 0, out);
  BOOST_TEST(out.find("no whole-file checksum") != std::string::npos, out);
}

BOOST_AUTO_TEST_CASE(a_second_run_on_the_same_output_fails_at_once_naming_the_holder) {
  const fs::path out = ws().dir / "locked.h5";
  // The first run is held at its first chunk (a test pause point, util/stop_signal.h), long after it
  // took the lock, so it keeps holding it however fast or loaded the machine is.
  const fs::path config = ws().write_config("slow.toml", "[heatmap]\ncases = 8\n[noise]\nsamples = 8\n",
                                            (source_dir() / "demo/counterfact_demo.json").string());
  Process first = spawn(moetrace_command({"run", config.string(), "--out", out.string()}, pause_env("chunk", 1)),
                        ws().dir / "first.log");
  BOOST_TEST_REQUIRE(wait_for_pauses(ws().dir / "first.log", 1, 600000), slurp(ws().dir / "first.log"));
  const std::string holder = slurp(out.string() + ".lock");
  BOOST_TEST_REQUIRE(holder.find("pid " + std::to_string(first.pid)) != std::string::npos, holder);
  const auto t0 = std::chrono::steady_clock::now();
  expect_exit_2({"run", config.string(), "--out", out.string()},
                {"locked.h5", "another moetrace run", "pid " + std::to_string(first.pid), "host "});
  BOOST_TEST_MESSAGE("second run refused in " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s");
  expect_exit_2({"run", config.string(), "--out", out.string(), "--resume"}, {"pid " + std::to_string(first.pid)});
  kill(first.pid, SIGKILL);
  first.wait();
  // The crashed run leaves a stale snapshot temporary: the next start removes it and proceeds.
  std::ofstream(out.string() + ".tmp") << "half-written snapshot";
  fs::remove(out);
  std::string log;
  const int rc = ws().run({"run", config.string(), "--out", out.string()}, log);
  BOOST_TEST(rc == 0, log);
  BOOST_TEST(log.find(".tmp") != std::string::npos, "the removal is reported: " << log);
  BOOST_TEST(!fs::exists(out.string() + ".tmp"));
}

// ---------------------------------------------------------------------------------------------
// Issue 25: hostile inputs that still broke the exit-code contract.

namespace {

// A finished run's results file (written once), copied to `name` in the workspace.
fs::path copy_of_finished_run(const std::string& name) {
  static const fs::path finished = [] {
    const fs::path p = ws().dir / "finished.h5";
    std::string out;
    fs::remove(p);
    BOOST_TEST_REQUIRE(ws().run({"run", ws().config.string(), "--out", p.string()}, out) == 0, out);
    return p;
  }();
  const fs::path to = ws().dir / name;
  fs::remove(to);
  fs::remove(to.string() + ".journal");
  fs::copy_file(finished, to);
  return to;
}

// Bytes of a fixed pseudo-random sequence (xorshift), for "random bytes appended".
std::string noise_bytes(std::size_t n) {
  std::string s(n, '\0');
  std::uint64_t x = 0x243F6A8885A308D3ull;
  for (auto& c : s) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x >> 56);
  }
  return s;
}

void append_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::app) << bytes;
}

// A tmpfs of `size` mounted on a fresh folder (root only), filled up by a file so that no data
// block is left: writes there fail with ENOSPC. `mounted` is false where mounting is not permitted.
struct FullDisk {
  fs::path dir = fresh_temp_dir("full-disk");
  bool mounted = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=256k") == 0;
  FullDisk() {
    if (!mounted) return;
    std::ofstream fill(dir / "filler", std::ios::binary);
    const std::string block(4096, 'x');
    for (int i = 0; i < 1024 && fill.write(block.data(), block.size()); ++i) fill.flush();
  }
  ~FullDisk() {
    if (mounted) ::umount2(dir.c_str(), MNT_DETACH);
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_journal_that_is_not_a_regular_file_is_exit_2_on_resume) {
  // A directory (once exit 3 from basic_filebuf), a FIFO (once a hang), a link to /dev/zero (once a
  // read without bound).
  const fs::path out = copy_of_finished_run("journal_special.h5");
  const fs::path journal = out.string() + ".journal";
  const std::string before = slurp(out);
  fs::create_directory(journal);
  expect_exit_2({"run", ws().config.string(), "--out", out.string(), "--resume"},
                {journal.string(), "is not a regular file", "a directory"});
  fs::remove(journal);
  BOOST_TEST_REQUIRE(mkfifo(journal.c_str(), 0644) == 0);
  expect_exit_2({"run", ws().config.string(), "--out", out.string(), "--resume"},
                {journal.string(), "is not a regular file", "a FIFO"});
  fs::remove(journal);
  fs::create_symlink("/dev/zero", journal);
  expect_exit_2({"run", ws().config.string(), "--out", out.string(), "--resume"},
                {journal.string(), "is not a regular file", "a symbolic link to a character device"});
  fs::remove(journal);
  BOOST_TEST((slurp(out) == before), "the results file is left as it was");
  // `merge` reads the journal of an input the same way.
  fs::create_directory(journal);
  expect_exit_2({"merge", out.string(), copy_of_finished_run("journal_special_2.h5").string(), "--out",
                 (ws().dir / "merged_special.h5").string()}, {journal.string(), "is not a regular file"});
  fs::remove(journal);
}

BOOST_AUTO_TEST_CASE(a_damaged_last_journal_record_is_dropped_and_the_run_resumes) {
  // Journals of empty records (a checkpoint with no changes) continuing a finished run's file.
  auto journal_of = [](const fs::path& out, int records) {
    moetrace::journal::Writer w(out.string() + ".journal");
    for (int i = 0; i < records; ++i) w.append(moetrace::journal::base_of_file(out.string()), "");
    return fs::path(out.string() + ".journal");
  };
  constexpr std::size_t kFirstRecord = 24, kRecord = 20;
  struct Damage {
    const char* what;
    std::function<void(const fs::path&)> apply;
  };
  const std::vector<Damage> last_record_damage{
      {"100 random bytes appended", [](const fs::path& j) { append_bytes(j, noise_bytes(100)); }},
      {"magic", [](const fs::path& j) { overwrite(j, kFirstRecord + kRecord, "X"); }},
      {"size", [](const fs::path& j) { overwrite(j, kFirstRecord + kRecord + 4, "\x07"); }},
      {"payload CRC", [](const fs::path& j) { overwrite(j, kFirstRecord + kRecord + 12, "\x01"); }},
      {"header CRC", [](const fs::path& j) { overwrite(j, kFirstRecord + kRecord + 16, "\x01"); }},
  };
  for (const Damage& d : last_record_damage) {
    BOOST_TEST_CONTEXT(d.what) {
      const fs::path out = copy_of_finished_run("journal_tail.h5");
      d.apply(journal_of(out, 2));
      std::string log;
      BOOST_TEST(ws().run({"run", ws().config.string(), "--out", out.string(), "--resume"}, log) == 0, log);
      BOOST_TEST(log.find("dropped a torn or damaged last record") != std::string::npos, log);
      BOOST_TEST(!fs::exists(out.string() + ".journal"));
    }
  }
  // The same damage with a whole record after it is still exit 2 naming the record.
  const fs::path out = copy_of_finished_run("journal_middle.h5");
  const fs::path j = journal_of(out, 3);
  overwrite(j, kFirstRecord + kRecord, "X");
  expect_exit_2({"run", ws().config.string(), "--out", out.string(), "--resume"},
                {j.string(), "record 2", "records follow it"});
}

BOOST_AUTO_TEST_CASE(a_results_file_cut_inside_its_seal_reports_its_real_size) {
  for (const std::uintmax_t size : {32u, 100u, 511u}) {
    const fs::path cut = copy_of_finished_run("cut.h5");
    fs::resize_file(cut, size);
    expect_exit_2({"report", cut.string()}, {"cut.h5", "it has " + std::to_string(size) + " bytes where"});
  }
}

BOOST_AUTO_TEST_CASE(a_report_that_cannot_be_written_is_exit_2) {
  if (!fs::exists("/dev/full")) {
    BOOST_TEST_MESSAGE("skipped: no /dev/full");
    return;
  }
  const fs::path results = copy_of_finished_run("report_full.h5");
  for (const std::vector<std::string> format : {std::vector<std::string>{}, {"--format", "json"},
                                                {"--format", "csv"}}) {
    std::vector<std::string> argv{"/bin/sh", "-c", "exec \"$0\" \"$@\" > /dev/full", moetrace_binary().string(),
                                  "report", results.string()};
    argv.insert(argv.end(), format.begin(), format.end());
    const fs::path log = ws().dir / "report_full.log";
    fs::remove(log);
    const int rc = run_to_end(argv, log);
    const std::string out = slurp(log);
    BOOST_TEST(rc == 2, "exit " << rc << ": " << out);
    BOOST_TEST(out.find("cannot write the report to standard output: No space left on device") != std::string::npos,
               out);
  }
}

BOOST_AUTO_TEST_CASE(a_snapshot_on_a_full_disk_is_exit_2_and_leaves_no_tmp) {
  FullDisk disk;
  if (!disk.mounted) {
    BOOST_TEST_MESSAGE("skipped: mounting a tmpfs is not permitted here");
    return;
  }
  const fs::path out = disk.dir / "o.h5";
  expect_exit_2({"run", ws().config.string(), "--out", out.string()},
                {"o.h5.tmp", "No space left on device"});
  BOOST_TEST(!fs::exists(out.string() + ".tmp"));
  BOOST_TEST(!fs::exists(out.string() + ".lock"));
}

BOOST_AUTO_TEST_CASE(replay_refuses_non_finite_outputs_of_finite_weights) {
  // Every lm_head weight the largest finite bf16: the weights load, the logits overflow to -inf.
  ModelFolder m = ModelFolder::read(fixtures_dir() / "qwen3moe-tiny");
  StTensor& head = m.at("lm_head.weight");
  head = StTensor::from_float(head.name, head.dtype, head.shape,
                              std::vector<float>(static_cast<std::size_t>(head.numel()),
                                                 std::bit_cast<float>(std::uint32_t{0x7F7F0000})));
  const fs::path model = m.write(ws().dir / "huge-lm-head");
  const fs::path out = ws().dir / "huge-lm-head.replay.h5";
  expect_exit_2({"replay", "--model", model.string(), "--in", (fixtures_dir() / "qwen3moe-tiny.golden.h5").string(),
                 "--out", out.string()},
                {model.string(), "qwen3moe-tiny.golden.h5", "facts/0/clean/logits", "non-finite"});
  BOOST_TEST(!fs::exists(out), "nothing is written");
}
