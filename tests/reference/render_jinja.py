#!/usr/bin/env python3
"""Reference renderer for the Llama Guard 3 prompt property test (t_prompt_jinja.sh).

  render_jinja.py gen N SEED            random conversation objects, one JSON per line
  render_jinja.py render TEMPLATE       JSON lines on stdin -> {"prompt": ...} | {"error": ...}
  render_jinja.py compare EXPECTED GOT  line-by-line comparison, exit 1 on any difference
  render_jinja.py gen8 N SEED           the same for the Llama Guard 3 8B (mostly string content)
  render_jinja.py render8 TEMPLATE_8B TEMPLATE_1B
                                        JSON lines on stdin -> what guardd must render with the 8B format

"render" runs the model's real chat template with jinja2 configured the way
Hugging Face transformers does it (immutable sandbox, trim_blocks,
lstrip_blocks, loopcontrols, a raise_exception global). A message whose
content is a plain string is turned into one text part first: guardd renders
string content that way on purpose, whereas the bare template drops it
(vLLM #9294; the C tests check that difference against rendered_e).
"""
import json
import random
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox

# Python str.isspace() characters, plus look-alikes that are NOT whitespace.
EXOTIC_WS = ["\t", "\n", "\x0b", "\x0c", "\r", "\x1c", "\x1d", "\x1e", "\x1f", " ",
             "\x85", "\xa0", "\u1680"] + [chr(c) for c in range(0x2000, 0x200B)] + \
            ["\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
NOT_WS = ["\u200b", "\ufeff", "\u180e", "\u2060", "\x00a".replace("\x00", "")]
WORDS = ["hello", "How", "do", "I", "make", "a", "bomb?", "mayonnaise", "recipe", "S1", "unsafe",
         "safe", "<|eot_id|>", "<|begin_of_text|>", "<|start_header_id|>", "{{ role }}", "{% raw %}",
         "User:", "Agent:", "<END CONVERSATION>", "café", "naïve", "日本語", "中文字", "Привет",
         "مرحبا", "😀", "👩‍💻", "e\u0301", "ﬁ", "１２３", "12345", "3.14", "'s", "don't", "\\n",
         "\"quoted\"", "tab\there", "a\nb", "x\r\ny", "...", "!!!", "--", "#", "$100", "   "]


def rand_text(r):
    if r.random() < 0.05:
        return ""
    if r.random() < 0.05:
        return "".join(r.choice(EXOTIC_WS) for _ in range(r.randint(1, 4)))
    core = " ".join(r.choice(WORDS) for _ in range(r.randint(1, 12)))
    if r.random() < 0.2:
        core = core.replace(" ", r.choice(EXOTIC_WS + ["\n\n", "  "]), r.randint(1, 3))
    lead = "".join(r.choice(EXOTIC_WS + NOT_WS) for _ in range(r.choice([0, 0, 1, 2, 3])))
    trail = "".join(r.choice(EXOTIC_WS + NOT_WS) for _ in range(r.choice([0, 0, 1, 2, 3])))
    return lead + core + trail


def rand_content(r):
    if r.random() < 0.3:
        return rand_text(r)  # plain string: guardd renders it as one text part
    return [{"type": "text", "text": rand_text(r)} for _ in range(r.choice([0, 1, 1, 1, 2, 3]))]


def rand_categories(r):
    codes = [f"S{i}" for i in range(1, 21)] + ["O1", "O2", "X", "c-1", "cat_2", "V.3"]
    names = ["Violent Crimes.", "Custom category 1. \nAI models should not talk about it",
             "Hate.", " leading space", "trailing space ", "名前", "multi\nline\nname",
             "Self-Harm & Suicide", "", "emoji 😀", "tab\tname"]
    picked = r.sample(codes, r.randint(1, 8))
    return {c: r.choice(names) for c in picked}


def gen_case(r):
    n = r.randint(1, 6)
    roles = ["user" if i % 2 == 0 else "assistant" for i in range(n)]
    if r.random() < 0.05:  # broken alternation: both sides must refuse
        i = r.randrange(n)
        roles[i] = "assistant" if roles[i] == "user" else "user"
    case = {"messages": [{"role": role, "content": rand_content(r)} for role in roles]}
    if r.random() < 0.3:
        case["categories"] = rand_categories(r)
    keys = list(case.get("categories") or [f"S{i}" for i in range(1, 14)])
    if r.random() < 0.3 and len(keys) > 1:
        case["exclude"] = r.sample(keys, r.randint(1, len(keys) - 1))
    return case


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env


def render(template_path):
    with open(template_path, encoding="utf-8") as f:
        template = make_env().from_string(f.read())
    for line in sys.stdin:
        case = json.loads(line)
        msgs = []
        for m in case["messages"]:
            content = m["content"]
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            msgs.append({"role": m["role"], "content": content})
        kwargs = {"messages": msgs, "excluded_category_keys": case.get("exclude", [])}
        if "categories" in case:
            kwargs["categories"] = case["categories"]
        try:
            out = {"prompt": template.render(**kwargs)}
        except jinja2.exceptions.TemplateError as e:
            out = {"error": str(e)}
        print(json.dumps(out, ensure_ascii=False))


CATEGORIES_8B = {"S1": "Violent Crimes.", "S2": "Non-Violent Crimes.", "S3": "Sex Crimes.",
                 "S4": "Child Exploitation.", "S5": "Defamation.", "S6": "Specialized Advice.",
                 "S7": "Privacy.", "S8": "Intellectual Property.", "S9": "Indiscriminate Weapons.",
                 "S10": "Hate.", "S11": "Self-Harm.", "S12": "Sexual Content.", "S13": "Elections.",
                 "S14": "Code Interpreter Abuse."}


def gen_case8(r):
    """Like gen_case, but content is a plain string 90 % of the time (all the
    8B template accepts), exclusions pick from S1..S14, and half the cases
    keep the default list."""
    case = gen_case(r)
    if r.random() < 0.5:
        case.pop("categories", None)
        case.pop("exclude", None)
    for m in case["messages"]:
        if r.random() < 0.9:
            m["content"] = rand_text(r)
    if "exclude" in case and "categories" not in case:
        keys = list(CATEGORIES_8B)
        case["exclude"] = r.sample(keys, r.randint(1, len(keys) - 1))
    return case


def between(text, start, end, last_end=False):
    """(a, b): text[a:b] lies between the first `start` and the first (or
    last) `end` after it."""
    a = text.index(start) + len(start)
    b = text.rindex(end) if last_end else text.index(end, a)
    return a, b


def splice(outer, inner, start, end, last_end):
    oa, ob = between(outer, start, end, last_end)
    ia, ib = between(inner, start, end, last_end)
    return outer[:oa] + inner[ia:ib] + outer[ob:]


CAT_START, CAT_END = "<BEGIN UNSAFE CONTENT CATEGORIES>\n", "<END UNSAFE CONTENT CATEGORIES>\n\n"
CONV_START, CONV_END = "<BEGIN CONVERSATION>\n\n", "<END CONVERSATION>\n\n"


def render8(template8_path, template1_path):
    """A conversation within the 8B template's contract (string content, the
    default list) is rendered by the 8B template alone. For the rest (text
    parts, a custom list, exclusions: guardd's documented extensions) the 8B
    template itself must refuse or cannot express it; the expected prompt is
    the 8B template's frame (rendered with placeholder strings, so its role
    checks and role word apply) with the category block and the conversation
    lines the 1B template renders for the same input."""
    env = make_env()
    with open(template8_path, encoding="utf-8") as f:
        t8 = env.from_string(f.read())
    with open(template1_path, encoding="utf-8") as f:
        t1 = env.from_string(f.read())
    for line in sys.stdin:
        case = json.loads(line)
        msgs = case["messages"]
        plain = all(isinstance(m["content"], str) for m in msgs) and "categories" not in case \
            and "exclude" not in case
        out = {}
        try:
            if plain:
                out["prompt"] = t8.render(messages=msgs)
            else:
                if not all(isinstance(m["content"], str) for m in msgs):
                    try:
                        t8.render(messages=msgs)
                        out["template_accepted_parts"] = True   # must not happen
                    except jinja2.exceptions.TemplateError:
                        out["template_refused_parts"] = True
                frame = t8.render(messages=[{"role": m["role"], "content": "x"} for m in msgs])
                parts = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]
                          if isinstance(m["content"], str) else m["content"]} for m in msgs]
                inner = t1.render(messages=parts, categories=case.get("categories", CATEGORIES_8B),
                                  excluded_category_keys=case.get("exclude", []))
                text = splice(frame, inner, CAT_START, CAT_END, False)
                out["prompt"] = splice(text, inner, CONV_START, CONV_END, True)
                out["extension"] = True
        except jinja2.exceptions.TemplateError as e:
            out = {"error": str(e)}
        print(json.dumps(out, ensure_ascii=False))


def compare(expected_path, got_path):
    with open(expected_path, encoding="utf-8") as f:
        exp = [json.loads(x) for x in f]
    with open(got_path, encoding="utf-8") as f:
        got = [json.loads(x) for x in f]
    if len(exp) != len(got):
        print(f"line count differs: expected {len(exp)}, got {len(got)}")
        return 1
    bad = errors = 0
    for i, (e, g) in enumerate(zip(exp, got)):
        if "error" in e:
            errors += 1
            ok = "error" in g
        else:
            ok = g.get("prompt") == e["prompt"]
        if not ok:
            bad += 1
            if bad <= 3:
                print(f"case {i + 1} differs:\n expected {json.dumps(e)[:3000]}\n got      {json.dumps(g)[:3000]}")
    print(f"{len(exp)} cases ({errors} refused by the template), {bad} differ")
    return 1 if bad else 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "gen":
        r = random.Random(int(sys.argv[3]))
        for _ in range(int(sys.argv[2])):
            print(json.dumps(gen_case(r), ensure_ascii=False))
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "gen8":
        r = random.Random(int(sys.argv[3]))
        for _ in range(int(sys.argv[2])):
            print(json.dumps(gen_case8(r), ensure_ascii=False))
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "render8":
        render8(sys.argv[2], sys.argv[3])
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "render":
        render(sys.argv[2])
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "compare":
        return compare(sys.argv[2], sys.argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
