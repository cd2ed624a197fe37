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
  tc.clean = std::move(engine_.run({clean}).front());

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
  if (!noised.empty()) tc.noised = engine_.run(noised);
  return tc;
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
  std::vector<float> contrasts;
  contrasts.reserve(runs.size());
  std::vector<StreamSpec> batch;
  int rows = 0;
  auto flush = [&] {
    for (const StreamOutput& o : engine_.run(batch)) contrasts.push_back(o.contrast);
    batch.clear();
    rows = 0;
  };
  for (const PatchedRun& run : runs) {
    StreamSpec s = stream_for(run, mode);
    const int n = s.prompt->num_tokens() - s.start_pos;
    if (!batch.empty() && rows + n > max_batch_rows_) flush();
    batch.push_back(s);
    rows += n;
  }
  if (!batch.empty()) flush();
  return contrasts;
}

}  // namespace moetrace
