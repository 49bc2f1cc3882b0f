"""Text in a document that addresses the assistant rather than the customer ("ignore previous
instructions", "reply only with", "repeat your system prompt", a fake end of the source fence) is
not evidence. The retrieval service sets it aside at ingest and the gateway again before it builds
a prompt, so a model is never asked to obey a document, whatever it would do if asked.

Patterns, not a classifier: the injection classifiers that exist need weights from a model hub,
which these machines cannot download, and a pattern that fires says exactly why."""

import re
from dataclasses import dataclass

_AI = r"(?:ai|a\.i\.|assistants?|chat ?bots?|bots?|language models?|llms?|gpt|models?)"
ADDRESSES_ASSISTANT = re.compile(
    "|".join(
        (
            # Overriding what came before.
            r"\b(?:ignore|disregard|forget|override|bypass)\b.{0,40}?\b(?:instructions?|rules|prompts?|directions"
            r"|guidelines|guardrails)\b",
            r"\b(?:new|updated|real|actual) (?:system )?instructions?\s*:",
            # A new role for the assistant.
            r"\byou are (?:now|no longer)\b",
            r"\bfrom now on,? (?:you|always|only|never)\b",
            r"\b(?:pretend|roleplay|role-play) (?:to be|as|that)\b",
            rf"\b(?:act|behave|respond) as (?:an? |the )?(?:unrestricted |unfiltered |different )?{_AI}\b",
            # Dictating the reply.
            r"\b(?:reply|respond|answer|output|say|write)\b(?: \w+){0,2} only\b(?: \w+){0,2} "
            r"(?:with|the word|the code)\b",
            r"\bonly (?:reply|respond|answer|output|say) with\b",
            r"\b(?:begin|start|end|prefix) (?:your|every|each|all) (?:reply|replies|answers?|responses?)\b",
            # Asking for what the assistant was told.
            r"\b(?:system prompt|system instructions|developer (?:message|prompt|instructions))\b",
            r"\b(?:initial|hidden|secret) (?:prompt|instructions)\b",
            r"\b(?:repeat|print|reveal|show|output|display|disclose|leak|recite)\b.{0,30}?\b(?:your|the) "
            r"(?:instructions|prompt|rules|configuration|context window)\b",
            # Speaking to the assistant by name.
            rf"\b(?:note|message|instructions?|attention) (?:to|for) (?:the |any |all )?{_AI}\b",
            rf"\bif you are an? {_AI}\b",
            rf"\bas an? {_AI},",
            rf"\b{_AI} (?:reading|processing|summari[sz]ing|answering (?:from|with)) (?:this|these)\b",
            r"\b(?:tell|instruct|inform|direct) (?:the|every|all|any|each) (?:users?|customers?|readers?)\b",
            r"\bwhen (?:a|the|any) (?:user|customer) asks\b",
            # Markup that opens or closes a prompt's parts.
            r"<\s*/?\s*source\b",
            r"^\W{0,3}(?:system|assistant|developer)\s*:",
            r"\[/?inst\]",
            r"<\|[a-z_]+\|>",
        )
    ),
    re.IGNORECASE | re.MULTILINE,
)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Screened:
    """A text with what addresses the assistant set aside."""

    text: str
    instructions: list[str]  # the sentences set aside, as written


def addresses_assistant(sentence: str) -> bool:
    return ADDRESSES_ASSISTANT.search(sentence) is not None


def screen(text: str) -> Screened:
    """`text` without its sentences that address the assistant (a line that loses every sentence
    goes whole), and those sentences. Text with none comes back unchanged."""
    kept: list[str] = []
    instructions: list[str] = []
    for line in text.split("\n"):
        sentences = SENTENCE_END.split(line)
        flagged = [s for s in sentences if addresses_assistant(s)]
        if not flagged:
            kept.append(line)
            continue
        instructions += [s.strip() for s in flagged]
        if rest := [s for s in sentences if not addresses_assistant(s)]:
            kept.append(" ".join(rest))
    return Screened("\n".join(kept), instructions)
