#include "results/merge.h"

#include <hdf5.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include "results/h5_file.h"
#include "results/journal.h"
#include "results/results_file.h"
#include "util/error.h"
#include "util/logging.h"

namespace moetrace {
namespace {

using h5::Handle;

constexpr const char* kDone = "_done";  // a per-case table's done flags: <table>_done (ResultsFile::ensure_matrix)
// The provenance fields that make files parts of one run.
constexpr const char* kIdentity[] = {"config_text", "model_files_sha256", "backend", "moetrace_version"};

bool in_provenance(const std::string& name) {
  const std::string p = layout::kProvenance;
  return name == p || name.rfind(p + "/", 0) == 0;
}

herr_t collect_link(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(std::string("/") + name);
  return 0;
}

// Every object of a file, parents before children.
std::vector<std::string> objects_of(const h5::File& f) {
  std::vector<std::string> names;
  if (H5Lvisit(f.id(), H5_INDEX_NAME, H5_ITER_INC, collect_link, &names) < 0)
    h5::fail_damaged(f.path(), "the file's group structure", "it cannot be walked");
  return names;
}

bool is_dataset(const h5::File& f, const std::string& name) {
  Handle obj(H5Oopen(f.id(), name.c_str(), H5P_DEFAULT));
  if (obj.id() < 0) h5::fail_damaged(f.path(), "'" + name + "'", "it cannot be opened");
  return H5Iget_type(obj.id()) == H5I_DATASET;
}

std::vector<std::string> attribute_names(const h5::File& f, const std::string& object) {
  Handle obj(H5Oopen(f.id(), object.c_str(), H5P_DEFAULT));
  H5O_info_t info;
  if (obj.id() < 0 || H5Oget_info(obj.id(), &info) < 0) h5::fail_damaged(f.path(), "'" + object + "'", "its header cannot be read");
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.num_attrs; ++i) {
    const ssize_t n = H5Aget_name_by_idx(obj.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) h5::fail_damaged(f.path(), "'" + object + "'", "its attributes cannot be read");
    std::string name(static_cast<std::size_t>(n), '\0');
    if (H5Aget_name_by_idx(obj.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), n + 1, H5P_DEFAULT) < 0)
      h5::fail_damaged(f.path(), "'" + object + "'", "its attributes cannot be read");
    names.push_back(name);
  }
  return names;
}

H5T_class_t attribute_class(const h5::File& f, const std::string& object, const std::string& name) {
  Handle a(H5Aopen_by_name(f.id(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT));
  Handle t(a.valid() ? H5Aget_type(a.id()) : -1);
  if (!t.valid()) h5::fail_damaged(f.path(), "attribute '" + name + "' of '" + object + "'", "its type cannot be read");
  return H5Tget_class(t.id());
}

// An attribute's value as bytes, by the three kinds moetrace writes (int64, float64, string).
std::string attribute_value(const h5::File& f, const std::string& object, const std::string& name) {
  switch (attribute_class(f, object, name)) {
    case H5T_INTEGER: {
      const std::int64_t v = f.attr_int(object, name);
      return "i" + std::string(reinterpret_cast<const char*>(&v), sizeof v);
    }
    case H5T_FLOAT: {
      const double v = f.attr_double(object, name);
      return "f" + std::string(reinterpret_cast<const char*>(&v), sizeof v);
    }
    case H5T_STRING: return "s" + f.attr_string(object, name);
    default:
      fail_input("{}: attribute '{}' of '{}' has a type moetrace does not write: not a moetrace results file?", f.path(),
                 name, object);
  }
}

void copy_attribute(const h5::File& in, h5::File& out, const std::string& object, const std::string& name) {
  switch (attribute_class(in, object, name)) {
    case H5T_INTEGER: out.set_attr(object, name, in.attr_int(object, name)); break;
    case H5T_FLOAT: out.set_attr(object, name, in.attr_double(object, name)); break;
    default: out.set_attr(object, name, in.attr_string(object, name)); break;
  }
}

// A dataset's stored type and values, to compare two files' copies exactly.
std::string dataset_bytes(const h5::File& f, const std::string& name) {
  Handle d(H5Dopen2(f.id(), name.c_str(), H5P_DEFAULT));
  Handle t(d.valid() ? H5Dget_type(d.id()) : -1);
  Handle space(d.valid() ? H5Dget_space(d.id()) : -1);
  const hssize_t n = space.valid() ? H5Sget_simple_extent_npoints(space.id()) : -1;
  if (!t.valid() || n < 0) h5::fail_damaged(f.path(), "dataset '" + name + "'", "it cannot be opened");
  std::string shape;
  for (std::size_t s : f.shape(name)) shape += std::to_string(s) + ",";
  if (H5Tget_class(t.id()) == H5T_STRING) {
    std::string out = "s[" + shape + "]";
    for (const std::string& v : f.read_strings(name)) out += std::to_string(v.size()) + ":" + v;
    return out;
  }
  Handle mtype(H5Tget_native_type(t.id(), H5T_DIR_DEFAULT));
  const std::size_t size = mtype.valid() ? H5Tget_size(mtype.id()) : 0;
  if (!size) h5::fail_damaged(f.path(), "dataset '" + name + "'", "its type cannot be read");
  std::string out = fmt::format("n{}:{}:{}[{}]", static_cast<int>(H5Tget_class(t.id())), H5Tget_size(t.id()),
                                static_cast<int>(H5Tget_order(t.id())), shape);
  std::string buf(size * static_cast<std::size_t>(n), '\0');
  if (n && H5Dread(d.id(), mtype.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0)
    h5::fail_damaged(f.path(), "dataset '" + name + "'", "its data cannot be read");
  return out + buf;
}

void copy_dataset(const h5::File& in, h5::File& out, const std::string& name) {
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE));
  if (!lcpl.valid() || H5Pset_create_intermediate_group(lcpl.id(), 1) < 0 ||
      H5Ocopy(in.id(), name.c_str(), out.id(), name.c_str(), H5P_DEFAULT, lcpl.id()) < 0)
    fail_input("cannot copy dataset '{}' from {} into {}", name, in.path(), out.path());
}

class Merger {
 public:
  Merger(const std::vector<std::string>& inputs, h5::File& out) : inputs_(inputs), out_(out) {}

  // Adds input `k` (input 0 is the copy `out` started from).
  void add(int k, const h5::File& in) {
    merge_attributes(k, in, "/");
    for (const std::string& name : objects_of(in)) {
      if (in_provenance(name)) continue;
      if (!is_dataset(in, name)) {
        if (!out_.exists(name)) out_.create_groups(name);
      } else if (is_done_flags(in, name)) {
        continue;  // merged with its table
      } else if (in.exists(name + kDone)) {
        merge_rows(k, in, name);
      } else {
        merge_dataset(k, in, name);
      }
      merge_attributes(k, in, name);
    }
  }

  MergeSummary summary() const {
    MergeSummary s;
    s.rows_shared = rows_shared_;
    for (const std::string& name : objects_of(out_)) {
      if (in_provenance(name) || !is_dataset(out_, name) || is_done_flags(out_, name) || !out_.exists(name + kDone))
        continue;
      ++s.row_tables;
      for (std::int64_t d : out_.read_int(name + kDone).data) s.rows_done += d != 0;
    }
    return s;
  }

 private:
  static bool is_done_flags(const h5::File& f, const std::string& name) {
    const std::size_t n = std::strlen(kDone);
    return name.size() > n && name.compare(name.size() - n, n, kDone) == 0 && f.exists(name.substr(0, name.size() - n));
  }

  const std::string& origin(const std::string& key) const {
    auto it = origin_.find(key);
    return inputs_[it == origin_.end() ? 0 : it->second];
  }

  void merge_dataset(int k, const h5::File& in, const std::string& name) {
    if (!out_.exists(name)) {
      copy_dataset(in, out_, name);
      origin_[name] = k;
      return;
    }
    if (dataset_bytes(in, name) != dataset_bytes(out_, name))
      fail_input("{}: dataset {} differs from the one in {}: the files are not parts of one run (different data "
                 "or moetrace build?)", in.path(), name, origin(name));
  }

  // A per-case table: rows done in `in` are taken where the output lacks them, and must be
  // bit-identical where it has them.
  void merge_rows(int k, const h5::File& in, const std::string& name) {
    const std::string done = name + kDone;
    if (!out_.exists(name)) {
      copy_dataset(in, out_, name);
      copy_dataset(in, out_, done);
      origin_[name] = k;
      row_origin_[name].assign(in.shape(name).at(0), k);
      return;
    }
    if (in.shape(name) != out_.shape(name) || !out_.exists(done))
      fail_input("{}: table {} has another shape than in {}: the files are not parts of one run", in.path(), name,
                 origin(name));
    const std::size_t rows = in.shape(name).at(0);
    if (rows == 0) return;
    const h5::Array<double> v_in = in.read_double(name);
    h5::Array<double> v_out = out_.read_double(name);
    const std::vector<std::int64_t> d_in = in.read_int(done).data, d_out = out_.read_int(done).data;
    if (d_in.size() != rows || d_out.size() != rows)
      fail_input("{}: {} does not have one done flag per row of {}", in.path(), done, name);
    const std::size_t width = v_in.numel() / rows;
    std::vector<std::int32_t> flags(d_out.begin(), d_out.end());
    std::vector<int>& source = row_origin_[name];
    source.resize(rows, 0);
    bool changed = false;
    for (std::size_t r = 0; r < rows; ++r) {
      if (!d_in[r]) continue;
      const double* a = v_in.data.data() + r * width;
      double* b = v_out.data.data() + r * width;
      if (flags[r]) {
        if (std::memcmp(a, b, width * sizeof(double)) != 0)
          fail_input("{}: row {} of {} differs from the same row in {}: a row done in two files must be "
                     "bit-identical (computed by another moetrace build or backend?)", in.path(), r, name,
                     inputs_[source[r]]);
        ++rows_shared_;
        continue;
      }
      std::memcpy(b, a, width * sizeof(double));
      flags[r] = 1;
      source[r] = k;
      changed = true;
    }
    if (!changed) return;
    out_.write_rows_double(name, 0, rows, v_out.data.data());
    out_.write_rows_int(done, 0, rows, flags.data());
  }

  void merge_attributes(int k, const h5::File& in, const std::string& object) {
    for (const std::string& a : attribute_names(in, object)) {
      const std::string key = object + "@" + a;
      if (!out_.has_attr(object, a)) {
        copy_attribute(in, out_, object, a);
        origin_[key] = k;
      } else if (attribute_value(in, object, a) != attribute_value(out_, object, a)) {
        fail_input("{}: attribute '{}' of {} differs from the one in {}: the files are not parts of one run",
                   in.path(), a, object, origin(key));
      }
    }
  }

  const std::vector<std::string>& inputs_;
  h5::File& out_;
  std::map<std::string, int> origin_;                   // dataset or object@attribute -> input it came from
  std::map<std::string, std::vector<int>> row_origin_;  // table -> input of each row
  std::size_t rows_shared_ = 0;
};

std::string provenance_field(ResultsFile& f, const char* field) {
  return f.h5().has_attr(layout::kProvenance, field) ? f.h5().attr_string(layout::kProvenance, field) : "(missing)";
}

// Which command wrote a file: /provenance protocol ("localize"), "run" where there is none.
std::string protocol_of(ResultsFile& f) { return f.protocol(); }

void sync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    fail_input("cannot sync {}: {}", path, std::strerror(errno));
  }
  ::close(fd);
}

// An interrupted run's file is its last snapshot plus the checkpoints in its journal: merging the
// snapshot alone would silently drop those rows, so such an input must be resumed first.
void refuse_pending_journal(const std::string& in) {
  const std::string jpath = journal::path_for(in);
  if (!std::filesystem::exists(jpath) || !std::filesystem::is_regular_file(in)) return;
  const journal::ReadResult j = journal::read(jpath, journal::base_of_file(in));
  if (!j.stale && !j.payloads.empty())
    fail_input("{}: its checkpoint journal {} holds {} checkpoint(s) not yet folded into the file (the run was "
               "interrupted): finish it with `moetrace run CONFIG --out {} --resume` (`moetrace localize` for a localize file) "
               "before merging",
               in, jpath, j.payloads.size(), in);
}

}  // namespace

MergeSummary merge_results(const std::vector<std::string>& inputs, const std::string& out) {
  namespace fs = std::filesystem;
  if (inputs.size() < 2) fail_input("merge: give at least two input files (got {})", inputs.size());
  if (fs::exists(out)) fail_input("--out {} already exists: merge writes a new file (results are never overwritten)", out);
  for (const std::string& in : inputs)
    if (fs::weakly_canonical(in) == fs::weakly_canonical(out)) fail_input("--out {} is also an input", out);

  // Every input is a results file whose data pass their checksums, of the same config and model.
  std::vector<std::unique_ptr<ResultsFile>> files;
  for (const std::string& in : inputs) {
    refuse_pending_journal(in);
    files.push_back(std::make_unique<ResultsFile>(in, ResultsFile::Mode::Read));
    files.back()->h5().verify();
  }
  const std::string protocol = protocol_of(*files[0]);
  for (std::size_t k = 1; k < files.size(); ++k)
    if (protocol_of(*files[k]) != protocol)
      fail_input("{}: a `moetrace {}` results file (/provenance protocol), but {} is a `moetrace {}` one: merge only "
                 "files of one run", inputs[k], protocol_of(*files[k]), inputs[0], protocol);
  for (std::size_t k = 1; k < files.size(); ++k)
    for (const char* field : kIdentity)
      if (provenance_field(*files[k], field) != provenance_field(*files[0], field))
        fail_input("{}: its provenance field '{}' differs from {}'s: merge only files of one run (same config "
                   "and model)", inputs[k], field, inputs[0]);

  const std::string tmp = out + ".tmp";
  std::string merged_from;
  for (std::size_t k = 0; k < files.size(); ++k) {
    const std::string shard = files[k]->shard().value_or("all");
    merged_from += fmt::format("{}{} (shard {})", k ? "\n" : "", inputs[k], shard);
  }
  MergeSummary summary;
  try {
    fs::copy_file(inputs[0], tmp, fs::copy_options::overwrite_existing);
    {
      h5::File o(tmp, h5::File::Mode::ReadWrite);
      Merger merger(inputs, o);
      for (std::size_t k = 1; k < files.size(); ++k) merger.add(static_cast<int>(k), files[k]->h5());
      // The merged file is no one shard's: its provenance is the first input's, plus where it came from.
      if (o.has_attr(layout::kProvenance, layout::kShardAttr))
        if (H5Adelete_by_name(o.id(), layout::kProvenance, layout::kShardAttr, H5P_DEFAULT) < 0)
          fail_input("{}: cannot update its provenance", tmp);
      o.set_attr(layout::kProvenance, "merged_from", merged_from);
      summary = merger.summary();
      summary.protocol = protocol;
      o.flush();
      o.close();  // seals the merged file (results/file_seal.h); a failure stops the merge
    }
    sync_file(tmp);
    fs::rename(tmp, out);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  return summary;
}

}  // namespace moetrace
