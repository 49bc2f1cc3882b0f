"""Where the sample data lies in the checkout's data/ folder (data/README.md describes each file):
the defaults of the commands, the benchmarks and the load test."""

from ragft.settings import REPO

DATA = REPO / "data"
SAMPLE_KB = DATA / "kb"  # the help-center knowledge base `ragft up` ingests
# The sample knowledge base's own collection: the only one it is ingested into, and no one else's.
SAMPLE_COLLECTION = "help-center"
EVAL_SET = DATA / "kb_questions.jsonl"
UNSEEN_DOCS = DATA / "unseen_docs.txt"  # documents no fine-tuning example is about
FRESHNESS_SET = DATA / "freshness.jsonl"
FINETUNE_SET = DATA / "finetune" / "train.jsonl"  # the default adapter's examples
TINY_FINETUNE_SET = DATA / "finetune" / "tiny.jsonl"  # 11 examples, for quick training runs
# The default adapter, trained by `make adapter` from FINETUNE_SET (ragft_cli.generation says how).
SHIPPED_ADAPTER = DATA / "adapters" / "support-voice"
