"""Model families, for recusal: a judge does not grade what its own family generated.

A family is the organisation whose model weights these are, not the provider that serves them:
``openrouter/anthropic/claude-3.5-sonnet``, ``bedrock/anthropic.claude-3-haiku`` and
``anthropic/claude-3-5-haiku-latest`` are all ``anthropic``; ``ollama/llama3.1`` and
``together_ai/meta-llama/Llama-3-70b`` are ``meta``. The model name decides first (by the
prefixes in :data:`FAMILIES`), then the provider prefix of a litellm string that names a
model maker (``anthropic/...``, ``mistral/...``); anything else is its own family (the model
name, lower-cased), so two unknown models never count as one family by accident.

Example:
    >>> family_of("openai/gpt-4o-mini"), family_of("ollama/llama3.1:8b")
    ('openai', 'meta')
    >>> family_of("openrouter/anthropic/claude-3.5-sonnet"), family_of("bedrock/mistral.mixtral")
    ('anthropic', 'mistral')
    >>> family_of("bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0")
    'anthropic'
    >>> family_of("openai/my-finetune")
    'my-finetune'
"""

from __future__ import annotations

FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("openai", ("gpt", "chatgpt", "o1", "o3", "o4", "davinci", "babbage", "text-davinci",
                "text-embedding", "omni-moderation", "codex")),
    ("anthropic", ("claude",)),
    ("google", ("gemini", "gemma", "palm", "chat-bison", "text-bison", "codegemma")),
    ("meta", ("llama", "meta-llama", "codellama", "llama-guard")),
    ("mistral", ("mistral", "mixtral", "codestral", "ministral", "pixtral", "magistral")),
    ("alibaba", ("qwen", "qwq")),
    ("deepseek", ("deepseek",)),
    ("microsoft", ("phi",)),
    ("xai", ("grok",)),
    ("cohere", ("command", "c4ai", "aya")),
    ("huggingface", ("smollm", "zephyr")),
    ("ibm", ("granite",)),
    ("nvidia", ("nemotron",)),
    ("01ai", ("yi-",)),
    ("tii", ("falcon",)),
    ("allenai", ("olmo", "tulu")),
    ("amazon", ("titan", "nova")),
)
"""(family, model-name prefixes), matched after the organisation part of the name is cut."""

MAKERS = frozenset({"anthropic", "google", "gemini", "vertex_ai", "mistral",
                    "cohere", "xai", "deepseek", "meta", "meta-llama", "qwen", "microsoft"})
"""Provider prefixes that are also a model maker (a fallback when the name is unknown).
``openai/`` is not one: litellm routes every OpenAI-compatible server (llama.cpp, vLLM) by it."""

_MAKER_FAMILY = {"gemini": "google", "vertex_ai": "google", "meta-llama": "meta",
                 "qwen": "alibaba"}


def model_name_of(model: str) -> str:
    """The model's own name in a litellm string: lower-cased, without the provider path and an
    ollama-style tag (``openai/gpt-4o-mini`` and ``ollama/Llama3.1:8b`` give ``gpt-4o-mini``
    and ``llama3.1``)."""
    return model.strip().lower().rsplit("/", 1)[-1].split(":", 1)[0]


def family_of(model: str) -> str:
    """The family of a litellm model string (see the module docstring)."""
    if not model.strip():
        return model
    # the model name: after the last "/" (keeping an ollama tag out), then after each "." (a
    # bedrock-style "maker." prefix, and a cross-region "us." / "eu." / "apac." before it)
    name = model_name_of(model)
    pieces = name.split(".")
    for candidate in (name, *(".".join(pieces[i:]) for i in range(1, len(pieces)))):
        for family, prefixes in FAMILIES:
            if any(candidate.startswith(p) for p in prefixes):
                return family
    for part in model.strip().lower().split("/")[:-1]:
        for piece in (part, *part.split(".")):
            if piece in MAKERS:
                return _MAKER_FAMILY.get(piece, piece)
    for piece in pieces[:-1]:
        if piece in MAKERS:
            return _MAKER_FAMILY.get(piece, piece)
    return name
