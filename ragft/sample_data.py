"""Where the sample data lies: the checkout's data/ folder (data/README.md describes each file), or
RAGFT_SAMPLE_DATA_DIR where ragft is installed without its checkout (the images copy data/ to
/app/data). The defaults of the commands, the benchmarks and the load test."""

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from ragft.settings import REPO


class SampleDataSettings(BaseSettings):
    """Read alone, at import: the commands' defaults are paths in it."""

    model_config = SettingsConfigDict(env_prefix="RAGFT_", extra="ignore")

    sample_data_dir: Path = REPO / "data"


DATA = SampleDataSettings().sample_data_dir
SAMPLE_KB = DATA / "kb"  # the help-center knowledge base `ragft up` ingests
# The sample knowledge base's own collection: the only one it is ingested into, and no one else's.
SAMPLE_COLLECTION = "help-center"
EVAL_SET = DATA / "kb_questions.jsonl"
UNSEEN_DOCS = DATA / "unseen_docs.txt"  # documents no fine-tuning example is about
FRESHNESS_SET = DATA / "freshness.jsonl"
INJECTION_SET = DATA / "injection.jsonl"  # documents that give the assistant orders, for `ragft injection`
FINETUNE_SET = DATA / "finetune" / "train.jsonl"  # the default adapter's examples
TINY_FINETUNE_SET = DATA / "finetune" / "tiny.jsonl"  # 11 examples, for quick training runs
# The default adapter, trained by `make adapter` from FINETUNE_SET (ragft_cli.generation says how).
SHIPPED_ADAPTER = DATA / "adapters" / "support-voice"
