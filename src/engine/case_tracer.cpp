#include "engine/case_tracer.h"

#include "util/error.h"

namespace moetrace {

CaseTracer::CaseTracer(Engine& engine, int max_batch_rows) : engine_(engine), max_batch_rows_(max_batch_rows) {}

TracedCase CaseTracer::prepare(const Prompt& prompt, std::vector<std::vector<float>> noise, Readout clean_readout,
                               const Deactivation* deactivation, RecordLevel noised_level) {
  TracedCase tc;
  tc.prompt = prompt;
  tc.noise = std::move(noise);
  StreamSpec clean;
  clean.prompt = &tc.prompt;
  clean.record = RecordLevel::Full;
  clean.readout = clean_readout;
  clean.deactivation = deactivation;
  tc.clean = std::move(run_batched({clean}, work_.prepare_steps).front());

  std::vector<StreamSpec> noised;
  for (const auto& n : tc.noise) {
    StreamSpec s;
    s.prompt = &tc.prompt;
    s.start_pos = prompt.subject_begin;
    s.base = s.start_pos > 0 ? tc.clean.record.get() : nullptr;
    s.noise = &n;
    s.deactivation = deactivation;
    s.record = noised_level;
    noised.push_back(s);
  }
  if (!noised.empty()) tc.noised = run_batched(noised, work_.prepare_steps);
  if (noised_level == RecordLevel::Full) tc.noised_full_from = 0;
  return tc;
}

std::vector<TracedCase> CaseTracer::prepare_batch(std::vector<PrepareRequest> requests) {
  std::vector<TracedCase> cases(requests.size());  // sized once: the specs point into it
  std::vector<StreamSpec> clean;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    cases[i].prompt = std::move(requests[i].prompt);
    cases[i].noise = std::move(requests[i].noise);
    StreamSpec s;
    s.prompt = &cases[i].prompt;
    s.record = RecordLevel::Full;
    clean.push_back(s);
  }
  std::vector<StreamOutput> out = run_batched(clean, work_.prepare_steps);
  for (std::size_t i = 0; i < cases.size(); ++i) cases[i].clean = std::move(out[i]);

  std::vector<StreamSpec> noised;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const TracedCase& tc = cases[i];
    for (const auto& n : tc.noise) {
      StreamSpec s;
      s.prompt = &tc.prompt;
      s.start_pos = tc.prompt.subject_begin;
      s.base = s.start_pos > 0 ? tc.clean.record.get() : nullptr;
      s.noise = &n;
      s.record = requests[i].noised_level;
      noised.push_back(s);
    }
  }
  out = run_batched(noised, work_.prepare_steps);
  std::size_t k = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    TracedCase& tc = cases[i];
    for (std::size_t j = 0; j < tc.noise.size(); ++j) tc.noised.push_back(std::move(out[k++]));
    if (requests[i].noised_level == RecordLevel::Full) tc.noised_full_from = 0;
  }
  return cases;
}

void CaseTracer::record_noised_in_full(const std::vector<TracedCase*>& cases, int from_layer) {
  std::vector<StreamSpec> streams;
  for (const TracedCase* tc : cases) {
    MOETRACE_ASSERT(tc->noised_full_from < 0 || tc->noised_full_from > from_layer, "noised runs already recorded");
    for (const StreamOutput& n : tc->noised) {
      MOETRACE_ASSERT(n.record && n.record->level != RecordLevel::None, "noised run without a record");
      StreamSpec s;
      s.prompt = &tc->prompt;
      s.start_layer = from_layer;
      s.base = n.record.get();  // its input, keys and values at from_layer: the run goes on from there
      s.record = RecordLevel::Full;
      streams.push_back(s);
    }
  }
  if (streams.empty()) return;
  std::vector<StreamOutput> out = run_batched(streams, work_.prepare_steps);
  std::size_t k = 0;
  for (TracedCase* tc : cases) {
    for (StreamOutput& n : tc->noised) {
      std::unique_ptr<RunRecord> full = std::move(out[k++].record);
      for (int l = 0; l < from_layer; ++l) full->layers[l] = std::move(n.record->layers[l]);
      n.record = std::move(full);  // the contrast is the noised run's, unchanged
    }
    tc->noised_full_from = from_layer;
  }
}

std::vector<std::size_t> CaseTracer::split_calls(const std::vector<int>& token_rows, int max_batch_rows) {
  std::vector<std::size_t> calls;
  int rows = 0;
  for (int n : token_rows) {
    if (!calls.empty() && calls.back() > 0 && rows + n > max_batch_rows) {
      calls.push_back(0);
      rows = 0;
    }
    if (calls.empty()) calls.push_back(0);
    ++calls.back();
    rows += n;
  }
  return calls;
}

std::vector<StreamOutput> CaseTracer::run_batched(const std::vector<StreamSpec>& streams, std::uint64_t& steps) {
  std::vector<StreamOutput> out;
  out.reserve(streams.size());
  std::vector<int> token_rows;
  for (const StreamSpec& s : streams) token_rows.push_back(s.prompt->num_tokens() - s.start_pos);
  std::size_t next = 0;
  for (std::size_t count : split_calls(token_rows, max_batch_rows_)) {
    const std::vector<StreamSpec> batch(streams.begin() + static_cast<std::ptrdiff_t>(next),
                                        streams.begin() + static_cast<std::ptrdiff_t>(next + count));
    next += count;
    ++work_.engine_calls;
    work_.streams += batch.size();
    const std::uint64_t before = engine_.layer_token_steps();
    for (StreamOutput& o : engine_.run(batch)) out.push_back(std::move(o));
    steps += engine_.layer_token_steps() - before;
  }
  return out;
}

StreamSpec CaseTracer::stream_for(const PatchedRun& run, PatchMode mode) {
  const TracedCase& tc = *run.traced;
  MOETRACE_ASSERT(run.sample >= 0 && run.sample < static_cast<int>(tc.noised.size()), "noise sample out of range");
  StreamSpec s;
  s.prompt = &tc.prompt;
  s.clean = tc.clean.record.get();
  s.condition = run.condition;
  if (mode == PatchMode::FastPath && run.condition && !run.condition->patches.empty()) {
    s.start_layer = run.condition->first_layer();
    s.start_pos = run.condition->first_position();
    s.base = tc.noised[run.sample].record.get();
  } else {
    s.noise = &tc.noise[run.sample];
  }
  return s;
}

std::vector<float> CaseTracer::evaluate(const std::vector<PatchedRun>& runs, PatchMode mode) {
  std::vector<StreamSpec> streams;
  streams.reserve(runs.size());
  for (const PatchedRun& run : runs) streams.push_back(stream_for(run, mode));
  std::vector<float> contrasts;
  contrasts.reserve(runs.size());
  for (const StreamOutput& o : run_batched(streams, work_.condition_steps)) contrasts.push_back(o.contrast);
  return contrasts;
}

}  // namespace moetrace
