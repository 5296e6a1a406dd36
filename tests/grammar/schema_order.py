"""Serializations of a JSON instance the way the strict grammar writes it: compact, keys of
an object in the schema's order (declared properties in `properties` order, then required
names not declared, then the rest in the instance's order). Where the schema branches
(anyOf/oneOf, type arrays), each branch gives a candidate; the instance matches the grammar
iff some candidate does."""
import json

from grammar_cli import compact, number_text

MAX_CANDIDATES = 32


def resolve(root, schema, depth=0):
    """Follows local $ref and one-element allOf."""
    while isinstance(schema, dict) and depth < 50:
        depth += 1
        if "$ref" in schema and isinstance(schema["$ref"], str) and schema["$ref"].startswith("#"):
            target = root
            for seg in schema["$ref"][1:].split("/")[1:]:
                seg = seg.replace("~1", "/").replace("~0", "~")
                try:
                    target = target[int(seg)] if isinstance(target, list) else target[seg]
                except (KeyError, IndexError, ValueError, TypeError):
                    return schema
            schema = target
        elif isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
            schema = schema["allOf"][0]
        else:
            break
    return schema


def branches(root, schema):
    schema = resolve(root, schema)
    if isinstance(schema, dict):
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                out = []
                for b in schema[key]:
                    out.extend(branches(root, b))
                return out or [schema]
    return [schema]


def candidates(root, schema, inst):
    out = []
    for b in branches(root, schema):
        for c in _one(root, b, inst):
            if c not in out:
                out.append(c)
        if len(out) >= MAX_CANDIDATES:
            break
    return out[:MAX_CANDIDATES] or [compact(inst)]


def _product(parts):
    results = [""]
    for options in parts:
        results = [r + o for r in results for o in options][:MAX_CANDIDATES]
    return results


def _one(root, schema, inst):
    s = schema if isinstance(schema, dict) else {}
    if isinstance(inst, dict):
        props = s.get("properties") if isinstance(s.get("properties"), dict) else {}
        order = list(props)
        order += [k for k in s.get("required", []) if isinstance(k, str) and k not in order]
        keys = [k for k in order if k in inst] + [k for k in inst if k not in order]
        extra = s.get("additionalProperties", True)
        parts = [["{"]]
        for i, k in enumerate(keys):
            sub = props.get(k, extra if k not in order else True)
            vals = candidates(root, sub, inst[k])
            parts.append([("," if i else "") + json.dumps(k, ensure_ascii=False) + ":" + v for v in vals])
        parts.append(["}"])
        return _product(parts)
    if isinstance(inst, list):
        prefix = s.get("prefixItems") if isinstance(s.get("prefixItems"), list) else None
        rest = s.get("items", True)
        if prefix is None and isinstance(s.get("items"), list):
            prefix, rest = s["items"], s.get("additionalItems", True)
        parts = [["["]]
        for i, x in enumerate(inst):
            sub = prefix[i] if prefix is not None and i < len(prefix) else rest
            parts.append([("," if i else "") + v for v in candidates(root, sub, x)])
        parts.append(["]"])
        return _product(parts)
    if isinstance(inst, str):
        return [json.dumps(inst, ensure_ascii=False)]
    if inst is None:
        return ["null"]
    return [number_text(inst)]
