#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <functional>

#include <nlohmann/json.hpp>

#include "tokenizer/utf8.h"
#include "util/error.h"
#include "util/json_input.h"
#include "util/message.h"

namespace moetrace::tok {

using json = nlohmann::json;

void Vocab::load(std::vector<std::pair<std::string, std::int64_t>>&& entries, const std::string& where) {
  std::int64_t max_id = -1;
  const std::int64_t bound = std::min<std::int64_t>(static_cast<std::int64_t>(entries.size()) + kMaxVocabIdGap, INT32_MAX);
  for (const auto& [tok, id] : entries) {
    if (id < 0 || id >= bound)
      fail_input("{}: model.vocab entry \"{}\" has the id {}; ids must be in [0, {}) for a vocabulary of {} entries",
                 where, truncate_for_message(tok), id, bound, entries.size());
    max_id = std::max(max_id, id);
  }
  tokens_.assign(static_cast<std::size_t>(max_id + 1), std::string());
  present_.assign(tokens_.size(), false);
  std::size_t cap = 16;
  while (cap < entries.size() * 2) cap *= 2;
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  for (auto& [tok, id] : entries) {
    const std::uint64_t h = StringHash{}(tok);
    const auto tag = static_cast<std::uint32_t>(h >> 32);
    std::size_t i = h & mask_;
    bool duplicate = false;
    for (; slots_[i].id >= 0; i = (i + 1) & mask_) {
      if (slots_[i].tag == tag && tokens_[slots_[i].id] == tok) {
        duplicate = true;
        break;
      }
    }
    if (duplicate) fail_input("{}: vocab token \"{}\" appears twice", where, truncate_for_message(tok));
    if (present_[id])
      fail_input("{}: vocab id {} is used by \"{}\" and \"{}\"", where, id, truncate_for_message(tokens_[id]),
                 truncate_for_message(tok));
    slots_[i] = Slot{static_cast<std::int32_t>(id), tag};
    tokens_[id] = std::move(tok);
    present_[id] = true;
  }
  entries.clear();
}

BpeModel::BpeModel(const json& m, TokenizerFile& file, const std::string& where) {
  if (m.contains("dropout") && !m["dropout"].is_null())
    fail_input("{}: unsupported tokenizer feature: BPE dropout (model.dropout = {})", where, json_for_message(m["dropout"]));
  for (const char* opt : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(opt) && m[opt].is_string() && !m[opt].get<std::string>().empty())
      fail_input("{}: unsupported tokenizer feature: BPE {} \"{}\"", where, opt, m[opt].get<std::string>());
  if (!file.has_vocab) fail_input("{}: BPE model has no \"vocab\"", where);
  if (!file.vocab_is_object) fail_input("{}: model \"vocab\" must be an object of token -> id", where);
  vocab_.load(std::move(file.vocab), where);
  byte_fallback_ = m.value("byte_fallback", false);
  fuse_unk_ = m.value("fuse_unk", false);
  ignore_merges_ = m.value("ignore_merges", false);
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    unk_id_ = vocab_.find(m["unk_token"].get<std::string>());
    if (!unk_id_)
      fail_input("{}: BPE unk_token \"{}\" is not in the vocabulary", where,
                 truncate_for_message(m["unk_token"].get<std::string>()));
  }
  for (int b = 0; b < 256; ++b) {
    const std::string name = fmt::format("<0x{:02X}>", b);
    const auto id = vocab_.find(name);
    byte_ids_[b] = id ? *id : -1;
  }
  if (!file.has_merges) fail_input("{}: BPE model has no \"merges\" array", where);
  if (!file.merges_are_valid)
    fail_input("{}: model \"merges\" must be an array of \"a b\" strings or [\"a\", \"b\"] pairs; found {}", where,
               truncate_for_message(file.bad_merge));
  std::size_t cap = 16;
  while (cap < file.merges.size() * 2) cap *= 2;
  merge_slots_.assign(cap, MergeSlot{});
  merge_mask_ = cap - 1;
  std::uint32_t rank = 0;
  std::string joined;
  for (std::size_t k = 0; k < file.merges.size(); ++k) {
    std::string_view a, b;
    const auto& mg = file.merges[k];
    if (!file.merge_is_pair[k]) {
      const std::string& s = mg.first;
      const auto sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        fail_input("{}: merge #{} \"{}\" is not two tokens separated by one space", where, rank,
                   truncate_for_message(s));
      a = std::string_view(s).substr(0, sp);
      b = std::string_view(s).substr(sp + 1);
    } else {
      a = mg.first;
      b = mg.second;
    }
    const auto ia = vocab_.find(a), ib = vocab_.find(b);
    joined.assign(a);
    joined.append(b);
    const auto im = vocab_.find(joined);
    if (!ia || !ib || !im)
      fail_input("{}: merge #{} (\"{}\", \"{}\") uses a token that is not in the vocabulary", where, rank,
                 truncate_for_message(a), truncate_for_message(b));
    const std::uint64_t kk = key(*ia, *ib);
    std::size_t i = hash_key(kk) & merge_mask_;
    while (merge_slots_[i].key != ~0ULL && merge_slots_[i].key != kk) i = (i + 1) & merge_mask_;
    if (merge_slots_[i].key == ~0ULL)  // the first (lowest-rank) occurrence of a pair wins
      merge_slots_[i] = MergeSlot{kk, Merge{rank, *im}};
    ++rank;
  }
}

void BpeModel::tokenize(std::string_view piece, std::vector<ModelToken>& out) const {
  if (piece.empty()) return;
  constexpr std::size_t kMaxCached = 256;
  if (piece.size() <= kMaxCached) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(piece);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const std::size_t first = out.size();
  run_bpe(piece, out);
  if (piece.size() <= kMaxCached) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() > 200000) cache_.clear();
    cache_.emplace(std::string(piece), std::vector<ModelToken>(out.begin() + first, out.end()));
  }
}

void BpeModel::run_bpe(std::string_view piece, std::vector<ModelToken>& out) const {
  if (ignore_merges_) {
    if (auto id = vocab_.find(piece)) {
      out.push_back({*id, 0, static_cast<std::uint32_t>(piece.size())});
      return;
    }
  }
  struct Sym {
    std::int32_t id;  // -1: character not in the vocabulary
    std::uint32_t b, e;
    std::int32_t prev, next;
  };
  thread_local std::vector<Sym> syms;
  syms.clear();
  std::size_t i = 0;
  while (i < piece.size()) {
    const std::size_t b = i;
    i += std::min(utf8_len(static_cast<unsigned char>(piece[i])), piece.size() - i);
    const auto id = vocab_.find(piece.substr(b, i - b));
    const auto n = static_cast<std::int32_t>(syms.size());
    syms.push_back({id ? *id : -1, static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(i), n - 1, n + 1});
  }
  syms.back().next = -1;

  struct Cand {
    std::uint32_t rank;
    std::int32_t pos;
    std::int32_t left, right;  // ids when queued, to detect stale entries
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  thread_local std::vector<Cand> heap;
  heap.clear();
  const auto cmp = std::greater<Cand>();
  auto push_pair = [&](std::int32_t p) {
    if (p < 0) return;
    const std::int32_t q = syms[p].next;
    if (q < 0 || syms[p].id < 0 || syms[q].id < 0) return;
    const Merge* mg = find_merge(syms[p].id, syms[q].id);
    if (!mg) return;
    heap.push_back({mg->rank, p, syms[p].id, syms[q].id});
    std::push_heap(heap.begin(), heap.end(), cmp);
  };
  for (std::int32_t p = 0; p + 1 < static_cast<std::int32_t>(syms.size()); ++p) push_pair(p);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), cmp);
    const Cand c = heap.back();
    heap.pop_back();
    Sym& l = syms[c.pos];
    if (l.id != c.left || l.next < 0) continue;  // merged away or changed
    Sym& r = syms[l.next];
    if (r.id != c.right) continue;
    l.id = find_merge(c.left, c.right)->id;
    l.e = r.e;
    const std::int32_t rn = r.next;
    l.next = rn;
    if (rn >= 0) syms[rn].prev = c.pos;
    r.id = -2;  // dead
    r.next = -1;
    push_pair(l.prev);
    push_pair(c.pos);
  }

  bool last_unk = false;
  for (std::int32_t p = 0; p >= 0; p = syms[p].next) {
    const Sym& s = syms[p];
    if (s.id >= 0) {
      out.push_back({s.id, s.b, s.e});
      last_unk = false;
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (std::uint32_t k = s.b; k < s.e; ++k) all = all && byte_ids_[static_cast<unsigned char>(piece[k])] >= 0;
      if (all) {
        for (std::uint32_t k = s.b; k < s.e; ++k) out.push_back({byte_ids_[static_cast<unsigned char>(piece[k])], s.b, s.e});
        last_unk = false;
        continue;
      }
    }
    if (!unk_id_)
      fail_input("character '{}' is not in the BPE vocabulary and the model has no unk_token",
                 std::string(piece.substr(s.b, s.e - s.b)));
    if (fuse_unk_ && last_unk)
      out.back().end = s.e;
    else
      out.push_back({*unk_id_, s.b, s.e});
    last_unk = true;
  }
}

}  // namespace moetrace::tok
