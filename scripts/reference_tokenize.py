#!/usr/bin/env python3
"""Reference tokenization of texts with llama.cpp, for checking ralmspec's own tokenizer.

llama.cpp (through llama-cpp-python, pinned in scripts/requirements.txt) is the reference
implementation of GGUF tokenizers: its own vocabulary loader, pre-tokenizer code and BPE,
written independently of ralmspec's.

Input: JSON lines (from FILE, or stdin when FILE is absent or `-`), each a JSON string or an
object with a "text" field. Output: one JSON line per input line, in order:

  (default)    the token ids of the text, as llama.cpp's `tokenize(add_bos=False,
               special=False)` gives them: special-token strings are plain text
  --special    the same with special=True: `<|im_start|>` and the like are single tokens
  --chat       the text is one user message; prints (as a JSON string) the prompt the GGUF's
               chat template renders for it with add_generation_prompt=True (jinja2, set up as
               HF transformers and llama-cpp-python do)
  --conversation  each text is the JSON of a list of messages ({"role", "content"}); prints the
               prompt the template renders for the whole conversation, as --chat does, with
               bos_token and eos_token set to the GGUF's tokens as transformers sets them

Usage: reference_tokenize.py MODEL.gguf [FILE] [--special | --chat | --conversation]
"""

import argparse
import json
import sys


def read_texts(path):
    stream = sys.stdin if path in (None, "-") else open(path, encoding="utf-8")
    with stream:
        for line in stream:
            if not line.strip():
                continue
            item = json.loads(line)
            yield item["text"] if isinstance(item, dict) else item


def render_chat(template, user, **extra):
    from jinja2 import BaseLoader
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(loader=BaseLoader(), trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    messages = user if isinstance(user, list) else [{"role": "user", "content": user}]
    return env.from_string(template).render(messages=messages, add_generation_prompt=True, **extra)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gguf")
    parser.add_argument("file", nargs="?")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--special", action="store_true")
    mode.add_argument("--chat", action="store_true")
    mode.add_argument("--conversation", action="store_true")
    args = parser.parse_args()

    try:
        from llama_cpp import Llama
    except ImportError as err:
        sys.exit(f"reference_tokenize.py: {err}; install scripts/requirements.txt (run scripts/test.sh)")

    llm = Llama(model_path=args.gguf, vocab_only=True, verbose=False)
    out = sys.stdout
    if args.conversation:
        template = llm.metadata.get("tokenizer.chat_template")
        if template is None:
            sys.exit(f"reference_tokenize.py: {args.gguf} has no chat template")

        def token_text(key):
            id = llm.metadata.get(key)
            return "" if id is None else llm.detokenize([int(id)], special=True).decode("utf-8")

        bos, eos = token_text("tokenizer.ggml.bos_token_id"), token_text("tokenizer.ggml.eos_token_id")
        for text in read_texts(args.file):
            rendered = render_chat(template, json.loads(text), bos_token=bos, eos_token=eos)
            out.write(json.dumps(rendered) + "\n")
        return
    if args.chat:
        template = llm.metadata.get("tokenizer.chat_template")
        if template is None:
            sys.exit(f"reference_tokenize.py: {args.gguf} has no chat template")
        for text in read_texts(args.file):
            out.write(json.dumps(render_chat(template, text)) + "\n")
        return
    for text in read_texts(args.file):
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=args.special)
        out.write(json.dumps(ids) + "\n")


if __name__ == "__main__":
    main()
