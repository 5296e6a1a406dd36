"""Token masks on the RWKV world vocabulary against xgrammar (PyPI, pinned in
scripts/requirements-test.txt), an independent exact matcher, at several prefixes of an
instance of each schema, and after each token of the instance as the world tokenizer
encodes it (rare characters become byte tokens, so some steps end inside a UTF-8
character).

Two comparisons:
  engine:  xgrammar compiles *our* GBNF for the schema (its EBNF dialect reads it): the
           masks must be identical, bit for bit (both engines are exact).
  schema:  xgrammar compiles the schema itself (compact: any_whitespace=False, separators
           "," and ":", strict_mode=True): the masks must be identical except for the
           systematic differences in KNOWN_SCHEMA_DIFFERENCES (docs/GRAMMAR.md)."""
import json
import os

import pytest

import grammar_cli

xgr = pytest.importorskip("xgrammar")
np = pytest.importorskip("numpy")

pytestmark = pytest.mark.skipif(not os.path.exists(grammar_cli.vocab_path()),
                                reason="world vocabulary not found (RWKVX_VOCAB)")

CASES = [
    ("small_object",
     {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
      "required": ["name", "age"]},
     '{"name":"Bob \\"the\\" Smith, Zoë 𝔘𝔫𝔦","age":42}'),
    ("nested_arrays",
     {"type": "object", "properties": {
         "id": {"type": "integer", "minimum": 1, "maximum": 9999},
         "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 4},
         "points": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
         "inner": {"type": "object", "properties": {"x": {"type": "number"}, "ok": {"type": "boolean"}},
                   "required": ["x"]}},
      "required": ["id", "tags"]},
     '{"id":123,"tags":["ab","héllo","𝔘☃"],"points":[[1,2.5],[-3e2]],"inner":{"x":-1.5e3,"ok":true}}'),
    ("enum_heavy",
     {"type": "object", "properties": {
         "color": {"enum": ["red", "green", "blue", "dark red", "dark green", "ünïcode"]},
         "size": {"enum": [1, 2, 3, 10, None, True]},
         "kind": {"const": "shirt"},
         "level": {"type": "string", "enum": ["low", "medium", "high"]}},
      "required": ["color", "size", "kind"]},
     '{"color":"dark red","size":10,"kind":"shirt","level":"medium"}'),
    ("optional_and_nullable",
     {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": ["integer", "null"]},
                                       "c": {"anyOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "integer"}}]}}},
     '{"a":"x","b":null,"c":[1,22]}'),
    ("recursive_ref",
     {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
                                                          "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                         "required": ["v", "kids"]}},
      "$ref": "#/$defs/node"},
     '{"v":1,"kids":[{"v":2,"kids":[]},{"v":3,"kids":[{"v":4,"kids":[]}]}]}'),
    ("json_object", None, '{"a":[1,{"b":"c\\n☃😀"}],"d":-1.5e3,"e":null,"f":true}'),
]


def explain_schema_difference(token, ours):
    """Why xgrammar's schema grammar and ours may differ on this token, or None."""
    # xgrammar writes strings with minLength/maxLength as [^"\\]{m,n}: raw control
    # characters (invalid JSON) allowed, escape sequences not. Ours: JSON characters,
    # escapes counted as one character.
    if not ours and any(b < 0x20 for b in token):
        return "xgrammar allows raw control characters in length-bounded strings"
    if ours and b"\\" in token:
        return "xgrammar allows no escapes in length-bounded strings"
    return None


def prefixes(instance):
    return sorted({instance[:k] for k in range(0, len(instance), 3)} | {instance})


@pytest.fixture(scope="module")
def world():
    vocab = grammar_cli.read_world_vocab()
    info = xgr.TokenizerInfo(vocab, xgr.VocabType.RAW, vocab_size=len(vocab), stop_token_ids=[0])
    return vocab, xgr.GrammarCompiler(info, max_threads=1)


@pytest.fixture(scope="module")
def ours():
    """Our GBNF and masks for every case, from one `rwkvx grammar` process."""
    requests = []
    for _, schema, inst in CASES:
        base = {"schema": schema} if schema is not None else {"json_object": True}
        requests.append(dict(base, print_gbnf=True, masks=prefixes(inst), walk=inst))
    return dict(zip([c[0] for c in CASES], grammar_cli.run_cli(requests, vocab=True)))


def xgrammar_mask(compiled, prefix, vocab_size):
    m = xgr.GrammarMatcher(compiled)
    if not m.accept_string(prefix):
        return None
    return bitmask_ids(m, vocab_size)


def bitmask_ids(matcher, vocab_size):
    bitmask = xgr.allocate_token_bitmask(1, vocab_size)
    matcher.fill_next_token_bitmask(bitmask)
    bits = np.unpackbits(bitmask.numpy()[0].view(np.uint8), bitorder="little")
    return {int(i) for i in np.nonzero(bits)[0] if i < vocab_size}


def walk_masks(compiled, ids, vocab_size):
    """xgrammar's mask before each token of `ids` and after the last."""
    m = xgr.GrammarMatcher(compiled)
    masks = []
    for t in ids + [None]:
        masks.append(bitmask_ids(m, vocab_size))
        if t is not None:
            assert m.accept_token(t), f"xgrammar rejects token {t}"
    return masks


def compare(name, compiled, answer, inst, vocab, explain):
    unexplained, explained = [], {}
    steps = [(repr(p), set(grammar_cli.mask_ids(m["hex"])) if m["accepted"] else None, xgrammar_mask(compiled, p, len(vocab)))
             for p, m in zip(prefixes(inst), answer["masks"])]
    walk = answer["walk"]
    assert walk["accepted"], f"{name}: our grammar rejects a token of the instance"
    for k, (hex_words, theirs) in enumerate(zip(walk["hex"], walk_masks(compiled, walk["ids"], len(vocab)))):
        steps.append((f"after {k} tokens", set(grammar_cli.mask_ids(hex_words)), theirs))
    for where, ours, theirs in steps:
        assert ours is not None and theirs is not None, f"{name}: a prefix is rejected at {where}"
        for t in ours ^ theirs:
            why = explain(vocab[t], t in ours) if explain else None
            if why is None:
                unexplained.append((where, vocab[t], "ours" if t in ours else "xgrammar"))
            else:
                explained[why] = explained.get(why, 0) + 1
    print(f"\n{name}: {len(steps)} masks compared, explained differences {explained}")
    assert not unexplained, f"{name}: {len(unexplained)} unexplained differences, e.g. {unexplained[:10]}"


@pytest.mark.parametrize("name,schema,inst", CASES, ids=[c[0] for c in CASES])
def test_engine_masks_equal_xgrammar_on_our_gbnf(world, ours, name, schema, inst):
    vocab, compiler = world
    compiled = compiler.compile_grammar(ours[name]["gbnf"])
    compare(name, compiled, ours[name], inst, vocab, None)


@pytest.mark.parametrize("name,schema,inst", CASES, ids=[c[0] for c in CASES])
def test_schema_masks_equal_xgrammar_schema(world, ours, name, schema, inst):
    vocab, compiler = world
    compiled = compiler.compile_json_schema(json.dumps(schema if schema is not None else {"type": "object"}),
                                            any_whitespace=False, separators=(",", ":"), strict_mode=True)
    compare(name, compiled, ours[name], inst, vocab, explain_schema_difference)
