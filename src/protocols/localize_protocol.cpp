#include "protocols/localize_protocol.h"

#include <limits>

#include "protocols/localize_pipeline.h"
#include "protocols/row_executor.h"
#include "results/results_file.h"

namespace moetrace::localize {

// The command's pipeline on an in-memory results file, every table in one chunk.
LocalizationResult run_localization(Engine& engine, const Tokenizer& tokenizer, const QuestionSet& questions,
                                    const LocalizeOptions& options) {
  ResultsFile scratch("localize-in-memory.h5", ResultsFile::Mode::Scratch);
  LocalRowExecutor executor(scratch, std::numeric_limits<int>::max(), 1e9, [] {});
  LocalizePipeline pipeline(engine, tokenizer, questions, options, scratch, executor);
  return pipeline.run();
}

}  // namespace moetrace::localize
