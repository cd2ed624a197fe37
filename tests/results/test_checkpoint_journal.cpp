// The checkpoint journal of a results file (docs/results.md, "Checkpoints"): a file resumed from its
// last snapshot plus the journal equals one written directly; a torn or damaged last record is
// dropped (the run resumes from the checkpoint before it); a damaged record followed by others is
// an InputError naming the journal and the record; a checkpoint appends what changed, whatever the
// size of the file (bytes counted by the results layer, not timed).
#define BOOST_TEST_MODULE checkpoint_journal
#include <boost/test/unit_test.hpp>

#include <sys/mount.h>
#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <fstream>

#include "results/journal.h"
#include "results/merge.h"
#include "results/results_file.h"
#include "support/cli_runner.h"
#include "support/input_error.h"
#include "support/test_paths.h"

namespace fs = std::filesystem;
using namespace moetrace;

namespace {

constexpr std::size_t kWidth = 64;

// Row r of the matrix: values that do not compress (the file's size is then its rows').
std::vector<double> row_values(std::size_t r, std::uint64_t salt = 0) {
  std::vector<double> v(kWidth);
  std::uint64_t x = (r + 1) * 0x9E3779B97F4A7C15ull ^ salt;
  for (auto& y : v) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    y = static_cast<double>(x >> 11) * 0x1p-53;
  }
  return v;
}

void write_base(const fs::path& path, std::size_t rows, std::size_t filled) {
  ResultsFile f(path.string(), ResultsFile::Mode::Create);
  Provenance p;
  p.config_text = "[run]\n";
  p.moetrace_version = "test";
  f.write_provenance(p);
  f.write_strings("/meta/reason", {"a", "b", "c"});
  f.ensure_matrix("/m", {rows, kWidth});
  for (std::size_t r = 0; r < filled; ++r) f.write_row("/m", r, row_values(r, 1));
  f.flush();
}

CaseTable small_cases() {
  CaseTable t;
  t.case_id = {7, 9};
  t.prompt = {"The Eiffel Tower is in", "Rome is the capital of"};
  t.subject = {"The Eiffel Tower", "Rome"};
  t.true_object = {" Paris", " Italy"};
  t.foil_object = {" Rome", " France"};
  t.relation = {"P1", "P2"};
  t.token_ids = {{1, 2, 3, 4}, {5, 6}};
  t.subject_begin = {0, 0};
  t.subject_end = {3, 1};
  t.true_id = {11, 12};
  t.foil_id = {13, 14};
  t.split = {0, 1};
  t.d_clean = {0.25, -1.5};
  t.d_noised = {0.125, 2.0};
  return t;
}

// The changes after the base, in three groups; `checkpoint` is called after each group.
template <typename F>
void write_changes(ResultsFile& f, F checkpoint, int from_group = 0) {
  if (from_group <= 0) {
    for (std::size_t r = 0; r < 4; ++r) f.write_row("/m", r, row_values(r));
    checkpoint();
  }
  if (from_group <= 1) {
    f.write_cases("/cases", small_cases());
    for (std::size_t r = 4; r < 7; ++r) f.write_row("/m", r, row_values(r));
    checkpoint();
  }
  if (from_group <= 2) {
    f.set_attr("/m", "selected", std::int64_t{3});
    f.set_attr("/m", "score", 0.75);
    f.set_attr("/meta", "note", std::string("third"));
    f.write_vector("/meta/curve", {1.0, 2.0, 3.5});
    for (std::size_t r = 7; r < 10; ++r) f.write_row("/m", r, row_values(r));
    checkpoint();
  }
}

struct Files {
  fs::path dir, ref, out, journal;
  explicit Files(const std::string& tag)
      : dir(test::fresh_temp_dir(tag)), ref(dir / "ref.h5"), out(dir / "out.h5"),
        journal(journal::path_for((dir / "out.h5").string())) {
    write_base(ref, 12, 0);
    {
      ResultsFile f(ref.string(), ResultsFile::Mode::Resume);
      write_changes(f, [] {});
      f.flush();
    }
    write_base(out, 12, 0);
  }
  // Writes the changes with a checkpoint after each group, then "dies" (no final snapshot).
  void write_journaled_and_die() {
    ResultsFile f(out.string(), ResultsFile::Mode::Resume);
    write_changes(f, [&] { f.checkpoint(); });
    BOOST_TEST(f.checkpoint_stats().journal_records == 3u);
    BOOST_TEST(f.checkpoint_stats().snapshots == 0u);  // no journal to fold in on open, no snapshot since
    BOOST_TEST(fs::exists(journal));
  }
  void expect_same_as_ref() {
    int compared = 0;
    for (const auto& d : test::differing_datasets(ref, out, &compared)) BOOST_ERROR(d << " differs");
    BOOST_TEST(compared >= 10);
    ResultsFile a(ref.string(), ResultsFile::Mode::Read), b(out.string(), ResultsFile::Mode::Read);
    BOOST_TEST(b.h5().attr_int("/m", "selected") == a.h5().attr_int("/m", "selected"));
    BOOST_TEST(b.h5().attr_double("/m", "score") == a.h5().attr_double("/m", "score"));
    BOOST_TEST(b.h5().attr_string("/meta", "note") == a.h5().attr_string("/meta", "note"));
  }
};

std::vector<bool> done_rows_of(const fs::path& p) {
  ResultsFile f(p.string(), ResultsFile::Mode::Read);
  return f.done_rows("/m");
}

void flip_byte(const fs::path& p, std::uintmax_t offset) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5A);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

// Byte offsets of the records: header 24 bytes, then per record 20 + payload bytes.
std::vector<std::uintmax_t> record_offsets(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::uintmax_t> out;
  for (std::size_t pos = 24; pos + 20 <= s.size();) {
    out.push_back(pos);
    std::uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= std::uint64_t{static_cast<unsigned char>(s[pos + 4 + i])} << (8 * i);
    pos += 20 + n;
  }
  return out;
}

// The third of three journal records is dropped on resume: the first two groups' rows are
// replayed, the run goes on from there (the third group again, then the end of the run), and the
// file ends equal to the uninterrupted run's with its journal folded away.
void resume_without_the_last_record(Files& t) {
  {
    ResultsFile f(t.out.string(), ResultsFile::Mode::Resume);
    BOOST_TEST(f.checkpoint_stats().replayed_records == 2u);
    const auto done = f.done_rows("/m");
    for (std::size_t r = 0; r < done.size(); ++r) BOOST_TEST(done[r] == (r < 7), "row " << r);
    write_changes(f, [&] { f.checkpoint(); }, 2);
    f.flush();
  }
  BOOST_TEST(!fs::exists(t.journal));
  t.expect_same_as_ref();
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_snapshot_plus_its_journal_replays_to_the_directly_written_file) {
  Files t("journal-replay");
  t.write_journaled_and_die();
  // The snapshot alone has none of the journaled rows: they come from the journal.
  for (bool d : done_rows_of(t.out)) BOOST_TEST(!d);
  {
    ResultsFile f(t.out.string(), ResultsFile::Mode::Resume);
    BOOST_TEST(f.checkpoint_stats().replayed_records == 3u);
    BOOST_TEST(!fs::exists(t.journal));  // folded into a new snapshot
  }
  t.expect_same_as_ref();
}

BOOST_AUTO_TEST_CASE(a_torn_last_record_is_dropped_and_the_run_resumes_from_the_record_before) {
  for (const bool truncate : {true, false}) {
    BOOST_TEST_CONTEXT((truncate ? "truncated" : "last byte damaged")) {
      Files t(truncate ? "journal-torn" : "journal-damaged-tail");
      t.write_journaled_and_die();
      const auto size = fs::file_size(t.journal);
      if (truncate) fs::resize_file(t.journal, size - 7);
      else flip_byte(t.journal, size - 1);
      resume_without_the_last_record(t);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_damaged_record_followed_by_others_is_an_input_error_naming_file_and_record) {
  Files t("journal-damaged-middle");
  t.write_journaled_and_die();
  const auto offsets = record_offsets(t.journal);
  BOOST_TEST_REQUIRE(offsets.size() == 3u);
  flip_byte(t.journal, offsets[1] + 20 + 5);  // in record 2's payload
  const std::string msg = test::input_error_of([&] { ResultsFile f(t.out.string(), ResultsFile::Mode::Resume); });
  BOOST_TEST(msg.find(t.journal.string()) != std::string::npos, msg);
  BOOST_TEST(msg.find("record 2") != std::string::npos, msg);
  // A damaged record header is refused the same way.
  flip_byte(t.journal, offsets[1] + 20 + 5);
  flip_byte(t.journal, offsets[0] + 6);
  const std::string msg1 = test::input_error_of([&] { ResultsFile f(t.out.string(), ResultsFile::Mode::Resume); });
  BOOST_TEST(msg1.find("record 1") != std::string::npos, msg1);
}

BOOST_AUTO_TEST_CASE(a_journal_of_an_earlier_snapshot_is_ignored) {
  Files t("journal-stale");
  t.write_journaled_and_die();
  const fs::path saved = t.dir / "saved.journal";
  fs::copy_file(t.journal, saved);
  { ResultsFile f(t.out.string(), ResultsFile::Mode::Resume); }  // replays, writes a new snapshot
  // A crash between a new snapshot's rename and the journal's removal leaves the old journal.
  fs::copy_file(saved, t.journal);
  {
    ResultsFile f(t.out.string(), ResultsFile::Mode::Resume);
    BOOST_TEST(f.checkpoint_stats().replayed_records == 0u);
  }
  BOOST_TEST(!fs::exists(t.journal));
  t.expect_same_as_ref();
}

BOOST_AUTO_TEST_CASE(bytes_appended_per_checkpoint_follow_the_changed_rows_not_the_file_size) {
  std::vector<std::uint64_t> per_checkpoint, image;
  for (const std::size_t rows : {std::size_t{64}, std::size_t{8192}}) {
    const fs::path dir = test::fresh_temp_dir("journal-size"), out = dir / "out.h5";
    write_base(out, rows, rows);
    ResultsFile f(out.string(), ResultsFile::Mode::Resume);
    const auto snapshots = f.checkpoint_stats().snapshots;
    image.push_back(f.checkpoint_stats().image_bytes);
    std::vector<std::uint64_t> bytes;
    for (std::size_t k = 0; k < 5; ++k) {
      f.write_row("/m", (k * 13) % rows, row_values(k, 2));
      f.checkpoint();
      bytes.push_back(f.checkpoint_stats().last_record_bytes);
    }
    BOOST_TEST(f.checkpoint_stats().snapshots == snapshots);  // no full image was written
    BOOST_TEST(f.checkpoint_stats().journal_records == 5u);
    // The first record also carries the journal's 24-byte header; the others are equal.
    BOOST_TEST(bytes[0] == bytes[1] + 24);
    for (std::size_t k = 2; k < bytes.size(); ++k) BOOST_TEST(bytes[k] == bytes[1]);
    per_checkpoint.push_back(bytes[1]);
  }
  const std::uint64_t row_bytes = kWidth * sizeof(double) + sizeof(std::int32_t);
  BOOST_TEST(image[1] > 50 * image[0], "images of " << image[0] << " and " << image[1] << " bytes");
  BOOST_TEST(per_checkpoint[0] == per_checkpoint[1]);
  BOOST_TEST(per_checkpoint[0] >= row_bytes);
  BOOST_TEST(per_checkpoint[0] < row_bytes + 200);
}

BOOST_AUTO_TEST_CASE(a_checkpoint_that_would_outgrow_the_journal_rule_writes_a_full_snapshot) {
  const fs::path dir = test::fresh_temp_dir("journal-rule"), out = dir / "out.h5";
  write_base(out, 16, 16);
  ResultsFile f(out.string(), ResultsFile::Mode::Resume);
  const auto before = f.checkpoint_stats();
  BOOST_TEST_REQUIRE(before.image_bytes / h5::File::kJournalImageFraction < h5::File::kJournalMinBytes);
  f.write_row("/m", 3, row_values(3, 9));
  f.checkpoint();
  BOOST_TEST(f.checkpoint_stats().snapshots == before.snapshots);
  BOOST_TEST(fs::exists(journal::path_for(out.string())));
  f.write_vector("/big", std::vector<double>(h5::File::kJournalMinBytes / sizeof(double) + 1, 0.5));
  f.checkpoint();
  BOOST_TEST(f.checkpoint_stats().snapshots == before.snapshots + 1);
  BOOST_TEST(!fs::exists(journal::path_for(out.string())));
  // Nothing changed since: a flush writes nothing.
  f.flush();
  BOOST_TEST(f.checkpoint_stats().snapshots == before.snapshots + 1);
}

// `moetrace merge` reads files, not journals: an interrupted input (snapshot + journal) is refused,
// naming the file and its journal, instead of silently merging without the journaled rows. Once
// resumed (journal folded in), the same input is accepted as far as the journal is concerned.
BOOST_AUTO_TEST_CASE(merge_refuses_an_input_whose_journal_holds_checkpoints) {
  Files t("journal-merge");
  t.write_journaled_and_die();
  const fs::path merged = t.dir / "merged.h5";
  const std::string msg = test::input_error_of([&] { merge_results({t.out.string(), t.ref.string()}, merged.string()); });
  BOOST_TEST(msg.find(t.out.string()) != std::string::npos, msg);
  BOOST_TEST(msg.find(t.journal.string()) != std::string::npos, msg);
  BOOST_TEST(msg.find("--resume") != std::string::npos, msg);
  BOOST_TEST(!fs::exists(merged));
  { ResultsFile f(t.out.string(), ResultsFile::Mode::Resume); }  // folds the journal in
  BOOST_TEST(!fs::exists(t.journal));
  const MergeSummary s = merge_results({t.out.string(), t.ref.string()}, merged.string());
  BOOST_TEST(s.rows_done == 10u);
}

// Issue 25: the header of the LAST record damaged (magic, size, CRCs) or bytes appended after the
// last record were exit 2 "records follow it" although none follow. Dropped like a torn record.
BOOST_AUTO_TEST_CASE(a_damaged_header_of_the_last_record_is_dropped_like_a_torn_one) {
  for (const std::uintmax_t at : {0u, 6u, 13u, 17u}) {  // magic, size, payload CRC, header CRC
    BOOST_TEST_CONTEXT("byte " << at << " of the last record's header") {
      Files t("journal-damaged-last-header");
      t.write_journaled_and_die();
      const auto offsets = record_offsets(t.journal);
      BOOST_TEST_REQUIRE(offsets.size() == 3u);
      flip_byte(t.journal, offsets[2] + at);
      resume_without_the_last_record(t);
    }
  }
  // 100 bytes after the last whole record (no record header among them): all three replayed.
  Files t("journal-appended");
  t.write_journaled_and_die();
  {
    std::ofstream j(t.journal, std::ios::binary | std::ios::app);
    std::uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 100; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      j.put(static_cast<char>(x >> 56));
    }
  }
  {
    ResultsFile f(t.out.string(), ResultsFile::Mode::Resume);
    BOOST_TEST(f.checkpoint_stats().replayed_records == 3u);
  }
  t.expect_same_as_ref();
}

// Issue 25: a journal that is not a regular file was exit 3 (a directory), a hang (a FIFO) or a
// read without bound (a link to /dev/zero): now an InputError naming it, before it is opened.
BOOST_AUTO_TEST_CASE(a_journal_that_is_not_a_regular_file_is_an_input_error_naming_it) {
  Files t("journal-special");
  const std::string before = test::slurp(t.out);
  auto expect_refused = [&](const std::string& kind) {
    const std::string msg = test::input_error_of([&] { ResultsFile f(t.out.string(), ResultsFile::Mode::Resume); });
    BOOST_TEST(msg.find(t.journal.string() + " is not a regular file") != std::string::npos, msg);
    BOOST_TEST(msg.find(kind) != std::string::npos, msg);
    fs::remove(t.journal);
  };
  fs::create_directory(t.journal);
  expect_refused("(a directory)");
  BOOST_TEST_REQUIRE(mkfifo(t.journal.c_str(), 0644) == 0);
  expect_refused("(a FIFO)");
  fs::create_symlink("/dev/zero", t.journal);
  expect_refused("(a symbolic link to a character device)");
  fs::create_symlink(t.dir, t.journal);
  expect_refused("(a symbolic link to a directory)");
  BOOST_TEST((test::slurp(t.out) == before), "the results file is left as it was");
  // A link to a regular journal is read as the journal.
  t.write_journaled_and_die();
  fs::rename(t.journal, t.dir / "elsewhere.journal");
  fs::create_symlink(t.dir / "elsewhere.journal", t.journal);
  {
    ResultsFile f(t.out.string(), ResultsFile::Mode::Resume);
    BOOST_TEST(f.checkpoint_stats().replayed_records == 3u);
  }
  t.expect_same_as_ref();
}

namespace {

// A tmpfs of 256 KiB on a fresh folder (root only); `mounted` is false where that is not permitted.
struct SmallDisk {
  fs::path dir = test::fresh_temp_dir("small-disk");
  bool mounted = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=256k") == 0;
  ~SmallDisk() {
    if (mounted) ::umount2(dir.c_str(), MNT_DETACH);
  }
};

}  // namespace

// Issue 25: a snapshot whose write failed (a full disk) left `<out>.tmp` behind. Now the failure
// is an InputError naming the temporary, which is removed; `<out>` keeps the last snapshot.
BOOST_AUTO_TEST_CASE(a_snapshot_that_does_not_fit_on_the_disk_leaves_no_tmp) {
  SmallDisk disk;
  if (!disk.mounted) {
    BOOST_TEST_MESSAGE("skipped: mounting a tmpfs is not permitted here");
    return;
  }
  const fs::path out = disk.dir / "out.h5";
  write_base(out, 16, 16);  // a few KiB: fits
  const std::string before = test::slurp(out);
  {
    ResultsFile f(out.string(), ResultsFile::Mode::Resume);
    f.ensure_matrix("/big", {1024, kWidth});  // 512 KiB of values that do not compress: does not fit
    for (std::size_t r = 0; r < 1024; ++r) f.write_row("/big", r, row_values(r, 3));
    const std::string msg = test::input_error_of([&] { f.flush(); });
    BOOST_TEST(msg.find(out.string() + ".tmp") != std::string::npos, msg);
    BOOST_TEST(msg.find("No space left on device") != std::string::npos, msg);
    BOOST_TEST(!fs::exists(out.string() + ".tmp"));
  }
  BOOST_TEST((test::slurp(out) == before), "the last complete snapshot stays");
}

// `moetrace merge` writes OUT.tmp too: a merge that does not fit leaves nothing behind either.
BOOST_AUTO_TEST_CASE(a_merge_that_does_not_fit_on_the_disk_leaves_no_tmp) {
  SmallDisk disk;
  if (!disk.mounted) {
    BOOST_TEST_MESSAGE("skipped: mounting a tmpfs is not permitted here");
    return;
  }
  const fs::path dir = test::fresh_temp_dir("merge-big"), full = dir / "full.h5", empty = dir / "empty.h5";
  write_base(full, 2048, 2048);  // 1 MiB of rows that do not compress
  write_base(empty, 2048, 0);
  // The first input is copied to OUT.tmp (the copy fails), or the rows of the second are added to it.
  for (const auto& inputs : {std::vector<std::string>{full.string(), empty.string()},
                             std::vector<std::string>{empty.string(), full.string()}}) {
    BOOST_TEST_CONTEXT("first input " << inputs[0]) {
      const fs::path out = disk.dir / "merged.h5";
      try {
        merge_results(inputs, out.string());
        BOOST_ERROR("the merge fitted on a 256 KiB disk");
      } catch (const InputError& e) {
        BOOST_TEST_MESSAGE(e.what());
      } catch (const fs::filesystem_error& e) {  // exit 2 too (src/cli/main.cpp)
        BOOST_TEST_MESSAGE(e.what());
      }
      BOOST_TEST(!fs::exists(out.string() + ".tmp"));
      BOOST_TEST(!fs::exists(out));
    }
  }
}
