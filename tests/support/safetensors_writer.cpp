#include "support/safetensors_writer.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <numeric>
#include <regex>
#include <stdexcept>

#include <fmt/format.h>

#include "support/test_paths.h"
#include "util/half_precision.h"

namespace moetrace::test {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::size_t dtype_bytes(const std::string& dtype) {
  if (dtype == "BF16" || dtype == "F16") return 2;
  if (dtype == "F32") return 4;
  throw std::runtime_error("safetensors_writer: no float conversion for dtype " + dtype);
}

std::vector<std::byte> read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + p.string());
  in.seekg(0, std::ios::end);
  const auto n = static_cast<std::size_t>(in.tellg());
  in.seekg(0);
  std::vector<std::byte> buf(n);
  in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(n));
  return buf;
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

}  // namespace

std::int64_t StTensor::numel() const {
  return std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<>());
}

std::vector<float> StTensor::to_float() const {
  const std::int64_t n = numel();
  if (static_cast<std::size_t>(n) * dtype_bytes(dtype) != data.size())
    throw std::runtime_error("tensor " + name + ": data size does not match its shape");
  std::vector<float> out(n);
  for (std::int64_t i = 0; i < n; ++i) {
    if (dtype == "F32") {
      std::memcpy(&out[i], data.data() + 4 * i, 4);
    } else {
      std::uint16_t v;
      std::memcpy(&v, data.data() + 2 * i, 2);
      out[i] = dtype == "BF16" ? bf16_to_float(v) : f16_to_float(v);
    }
  }
  return out;
}

StTensor StTensor::from_float(std::string name, std::string dtype, std::vector<std::int64_t> shape,
                              const std::vector<float>& values) {
  StTensor t{std::move(name), std::move(dtype), std::move(shape), {}};
  const std::size_t w = dtype_bytes(t.dtype);
  if (static_cast<std::size_t>(t.numel()) != values.size())
    throw std::runtime_error("tensor " + t.name + ": value count does not match its shape");
  t.data.resize(values.size() * w);
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (t.dtype == "F32") {
      std::memcpy(t.data.data() + 4 * i, &values[i], 4);
    } else {
      const std::uint16_t v = t.dtype == "BF16" ? float_to_bf16(values[i]) : float_to_f16(values[i]);
      std::memcpy(t.data.data() + 2 * i, &v, 2);
    }
  }
  return t;
}

std::uint16_t float_to_f16(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;               // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;              // >= 65520 rounds to inf
  if (abs < 0x38800000u) {                                    // below 2^-14: subnormal or zero
    if (abs < 0x33000000u) return sign;                       // below half the smallest subnormal
    const std::uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    // value = mant * 2^(exp - 150) = r * 2^-24  =>  r = mant >> (126 - exp), exp in [102, 112]
    const std::uint32_t total = 126u - (abs >> 23);
    std::uint32_t r = mant >> total;
    const std::uint32_t rem = mant & ((1u << total) - 1), half = 1u << (total - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return sign | static_cast<std::uint16_t>(r);
  }
  std::uint32_t h = ((abs >> 23) - 112) << 10 | ((abs >> 13) & 0x3ffu);
  const std::uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent: fine
  return sign | static_cast<std::uint16_t>(h);
}

void write_safetensors(const fs::path& path, const std::vector<StTensor>& tensors, const WriteOptions& options) {
  json header = json::object();
  if (options.metadata_format) header["__metadata__"] = {{"format", *options.metadata_format}};
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const StTensor& t = tensors[i];
    std::uint64_t end = offset + t.data.size();
    json entry = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, end}}};
    if (i == 0 && options.corruption == Corruption::WrongOffsets) entry["data_offsets"] = {offset, end - 1};
    if (i == 0 && options.corruption == Corruption::MissingDataOffsets) entry.erase("data_offsets");
    if (auto it = options.data_offsets.find(t.name); it != options.data_offsets.end())
      entry["data_offsets"] = {it->second.first, it->second.second};
    header[t.name] = entry;
    offset = end;
  }
  std::string text = header.dump();
  for (const std::string& name : options.duplicate_names) {  // nlohmann::json cannot hold duplicates: splice text
    const json once = {{name, header.at(name)}};
    std::string member = once.dump();  // {"name":{...}}: keep the inner member
    member.front() = ',';
    member.pop_back();
    text.insert(text.size() - 1, member);
  }
  text.append(options.extra_padding, ' ');
  if (options.corruption == Corruption::HeaderNotJson) text = text.substr(0, text.size() / 2) + "#garbage";
  if (options.corruption == Corruption::HeaderNotObject) text = "[" + text + "]";
  while (text.size() % 8 != 0) text.push_back(' ');  // the format pads the header with spaces
  std::uint64_t len = text.size();
  if (options.corruption == Corruption::HeaderLengthTooLarge) len = len + offset + 1000;
  len += static_cast<std::uint64_t>(options.header_length_delta);
  if (options.header_length) len = *options.header_length;

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + path.string());
  if (options.corruption == Corruption::TinyFile) {
    out.write("\x10\0\0\0\0", 5);
    return;
  }
  unsigned char le[8];
  for (int b = 0; b < 8; ++b) le[b] = static_cast<unsigned char>(len >> (8 * b));
  out.write(reinterpret_cast<const char*>(le), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    std::size_t n = tensors[i].data.size();
    if (options.corruption == Corruption::TruncatedData && i + 1 == tensors.size()) n /= 2;
    out.write(reinterpret_cast<const char*>(tensors[i].data.data()), static_cast<std::streamsize>(n));
  }
  const std::string trailing(options.trailing_bytes, '\0');
  out.write(trailing.data(), static_cast<std::streamsize>(trailing.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::vector<StTensor> read_safetensors(const fs::path& path) {
  const std::vector<std::byte> buf = read_all(path);
  if (buf.size() < 8) throw std::runtime_error(path.string() + ": too short");
  std::uint64_t len = 0;
  for (int b = 0; b < 8; ++b) len |= static_cast<std::uint64_t>(buf[b]) << (8 * b);
  if (len > buf.size() - 8) throw std::runtime_error(path.string() + ": bad header length");
  const char* h = reinterpret_cast<const char*>(buf.data() + 8);
  const json header = json::parse(h, h + len);
  std::vector<std::pair<std::uint64_t, StTensor>> found;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    StTensor t;
    t.name = name;
    t.dtype = entry.at("dtype").get<std::string>();
    t.shape = entry.at("shape").get<std::vector<std::int64_t>>();
    const auto begin = entry.at("data_offsets")[0].get<std::uint64_t>();
    const auto end = entry.at("data_offsets")[1].get<std::uint64_t>();
    if (end < begin || 8 + len + end > buf.size()) throw std::runtime_error(path.string() + ": bad offsets of " + name);
    t.data.assign(buf.begin() + static_cast<std::ptrdiff_t>(8 + len + begin),
                  buf.begin() + static_cast<std::ptrdiff_t>(8 + len + end));
    found.emplace_back(begin, std::move(t));
  }
  std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<StTensor> out;
  for (auto& [_, t] : found) out.push_back(std::move(t));
  return out;
}

ModelFolder ModelFolder::read(const fs::path& dir) {
  ModelFolder m;
  {
    std::ifstream in(dir / "config.json");
    if (!in) throw std::runtime_error("cannot open " + (dir / "config.json").string());
    m.config = json::parse(in);
  }
  if (fs::exists(dir / "model.safetensors.index.json")) {
    std::ifstream in(dir / "model.safetensors.index.json");
    const json index = json::parse(in);
    std::vector<std::string> shards;
    for (const auto& [_, shard] : index.at("weight_map").items())
      if (std::find(shards.begin(), shards.end(), shard.get<std::string>()) == shards.end())
        shards.push_back(shard.get<std::string>());
    std::sort(shards.begin(), shards.end());
    for (const std::string& s : shards)
      for (StTensor& t : read_safetensors(dir / s)) m.tensors.push_back(std::move(t));
  } else {
    m.tensors = read_safetensors(dir / "model.safetensors");
  }
  return m;
}

StTensor* ModelFolder::find(const std::string& name) {
  for (StTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

StTensor& ModelFolder::at(const std::string& name) {
  if (StTensor* t = find(name)) return *t;
  throw std::runtime_error("ModelFolder: no tensor " + name);
}

void ModelFolder::rename(const std::string& from, const std::string& to) { at(from).name = to; }

void ModelFolder::drop(const std::string& name) {
  at(name);
  std::erase_if(tensors, [&](const StTensor& t) { return t.name == name; });
}

void ModelFolder::add(StTensor t) { tensors.push_back(std::move(t)); }

void ModelFolder::reshape(const std::string& name, std::vector<std::int64_t> shape) {
  StTensor& t = at(name);
  const std::int64_t n = std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<>());
  if (n != t.numel()) throw std::runtime_error("ModelFolder::reshape: element count differs for " + name);
  t.shape = std::move(shape);
}

void ModelFolder::convert_dtype(const std::string& dtype) {
  for (StTensor& t : tensors) t = StTensor::from_float(t.name, dtype, t.shape, t.to_float());
}

void ModelFolder::fuse_experts() {
  const bool mixtral = config.at("model_type") == "mixtral";
  const int E = config.at(mixtral ? "num_local_experts" : "num_experts").get<int>();
  const int L = config.at("num_hidden_layers").get<int>();
  // Per-expert names and where the fused tensors go.
  const std::string block = mixtral ? "block_sparse_moe" : "mlp";
  const std::string g = mixtral ? "w1.weight" : "gate_proj.weight";
  const std::string u = mixtral ? "w3.weight" : "up_proj.weight";
  const std::string d = mixtral ? "w2.weight" : "down_proj.weight";
  std::map<std::string, std::vector<StTensor>> fused_of_first;  // first expert tensor -> fused pair
  std::vector<std::string> consumed;
  for (int l = 0; l < L; ++l) {
    const std::string p = fmt::format("model.layers.{}.{}.", l, block);
    std::vector<float> gate_up, down;
    std::vector<std::int64_t> gshape, dshape;
    std::string dtype;
    for (int e = 0; e < E; ++e) {
      const std::string x = fmt::format("{}experts.{}.", p, e);
      const StTensor &tg = at(x + g), &tu = at(x + u), &td = at(x + d);
      dtype = tg.dtype;
      gshape = tg.shape;
      dshape = td.shape;
      for (const StTensor* t : {&tg, &tu}) {
        auto v = t->to_float();
        gate_up.insert(gate_up.end(), v.begin(), v.end());
      }
      auto v = td.to_float();
      down.insert(down.end(), v.begin(), v.end());
      for (const std::string& n : {x + g, x + u, x + d}) consumed.push_back(n);
    }
    const std::string q = fmt::format("model.layers.{}.mlp.", l);
    fused_of_first[fmt::format("{}experts.0.{}", p, g)] = {
        StTensor::from_float(q + "experts.gate_up_proj", dtype, {E, 2 * gshape[0], gshape[1]}, gate_up),
        StTensor::from_float(q + "experts.down_proj", dtype, {E, dshape[0], dshape[1]}, down)};
    if (mixtral) rename(p + "gate.weight", q + "gate.weight");
  }
  std::vector<StTensor> out;
  for (StTensor& t : tensors) {
    if (auto it = fused_of_first.find(t.name); it != fused_of_first.end())
      for (StTensor& f : it->second) out.push_back(std::move(f));
    if (std::find(consumed.begin(), consumed.end(), t.name) != consumed.end()) continue;
    out.push_back(std::move(t));
  }
  tensors = std::move(out);
}

std::string ModelFolder::shard_name(int i, int n) { return fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, n); }

fs::path ModelFolder::write(const fs::path& dir, int shards, const WriteOptions& options) const {
  fs::create_directories(dir);
  write_text(dir / "config.json", config.dump(2));
  if (shards <= 1) {
    write_safetensors(dir / "model.safetensors", tensors, options);
    return dir;
  }
  json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
  std::size_t total = 0;
  const std::size_t n = tensors.size(), per = (n + shards - 1) / shards;
  for (int s = 0; s < shards; ++s) {
    std::vector<StTensor> part;
    for (std::size_t i = s * per; i < std::min(n, (s + 1) * per); ++i) {
      part.push_back(tensors[i]);
      index["weight_map"][tensors[i].name] = shard_name(s, shards);
      total += tensors[i].data.size();
    }
    write_safetensors(dir / shard_name(s, shards), part, options);
  }
  index["metadata"]["total_size"] = total;
  write_text(dir / "model.safetensors.index.json", index.dump(2));
  return dir;
}

fs::path copy_model_dir(const fs::path& src, const std::string& tag) {
  const fs::path dir = fresh_temp_dir(tag) / src.filename();
  fs::create_directories(dir);
  for (const auto& entry : fs::directory_iterator(src))
    if (entry.is_regular_file()) fs::copy_file(entry.path(), dir / entry.path().filename());
  return dir;
}

}  // namespace moetrace::test
