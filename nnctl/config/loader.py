"""Safe YAML loading for nnctl configs: plain Python data plus the line of every key.

PyYAML's own loaders are either unsafe (they can build arbitrary Python objects) or lossy
(line numbers are gone, duplicate keys silently keep the last value). So we subclass the
SafeLoader only to *compose* the node tree, which keeps marks, and convert the nodes to
dict/list/scalars ourselves. That one walk is where duplicate keys, non-string keys, merge
keys and unknown tags are refused, and where `marks` (key path -> 1-based line) is recorded
so the validator can later say `file:line: key.path: message`.

Every problem raises ConfigError (one line, with the file and, where there is one, the line).
The shared reliability guide (A8-A10) lists the threats this guards against.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import yaml

from nnctl.errors import ConfigError, excerpt

MAX_BYTES = 1 << 20          # configs are small; anything bigger is refused before parsing
MAX_ALIASES = 100            # per document; aliases are rare in a hand-written config
# nodes that aliases may copy in total (the "lol" bomb has only 72 aliases)
MAX_ALIAS_NODES = 10_000
# nesting, counted after alias expansion; keeps recursion far from the limit
MAX_DEPTH = 100

_T = "tag:yaml.org,2002:"
_MERGE = _T + "merge"
# Tags whose scalars the SafeConstructor turns into the plain types we promise.
_SCALAR_TAGS = {_T + t for t in ("str", "int", "float", "bool", "null")}
# Tags resolved implicitly that would give non-plain values: keep the text as written.
_AS_TEXT = {_T + "timestamp", _T + "value"}


@dataclass(frozen=True)
class LoadedYaml:
    data: dict
    marks: dict
    file: str

    def line_of(self, path: tuple) -> int | None:
        """Line of `path`, else of its nearest recorded ancestor, else None."""
        path = tuple(path)
        for end in range(len(path), -1, -1):
            if path[:end] in self.marks:
                return self.marks[path[:end]]
        return None


class _Loader(yaml.SafeLoader):
    """Composes nodes only; counts aliases and their expansion as they are met."""

    def __init__(self, text: str, file: str):
        super().__init__(text)
        self.file = file
        self._aliases = self._alias_nodes = self._depth = 0
        self._info: dict[int, tuple[int, int]] = {}   # id(node) -> (expanded size, height)

    def compose_node(self, parent, index):
        event = self.peek_event()
        line = event.start_mark.line + 1
        is_alias = isinstance(event, yaml.AliasEvent)
        if is_alias:
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise ConfigError(f"more than {MAX_ALIASES} aliases in one document, refused",
                                  file=self.file, line=line)
        elif self._depth >= MAX_DEPTH:
            raise ConfigError(f"nested more than {MAX_DEPTH} levels deep", file=self.file,
                              line=line)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if is_alias:
            # The alias shares its anchor's node; we will copy it, so charge its full size now,
            # before anything is expanded (sizes are memoised, so this stays linear).
            size, height = self._info.get(id(node), (None, 0))
            if size is None:
                raise ConfigError("alias refers to an anchor that contains it (recursive data)",
                                  file=self.file, line=line)
            self._alias_nodes += size
            if self._alias_nodes > MAX_ALIAS_NODES:
                raise ConfigError(f"aliases expand to more than {MAX_ALIAS_NODES} nodes, refused",
                                  file=self.file, line=line)
            if self._depth + height > MAX_DEPTH:
                raise ConfigError(f"nested more than {MAX_DEPTH} levels deep (through aliases)",
                                  file=self.file, line=line)
        else:
            kids = [self._info[id(c)] for c in _children(node)]
            self._info[id(node)] = (1 + sum(k[0] for k in kids),
                                    1 + max((k[1] for k in kids), default=0))
        return node


# YAML 1.1 (PyYAML) reads `1e-3` as a string: its float needs a dot and a signed exponent.
# Users mean a number, so also resolve exponent forms without a dot or sign as floats.
_Loader.add_implicit_resolver(
    _T + "float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _short(tag: str) -> str:
    """Show a tag as the user wrote it: `!!python/...` rather than `tag:yaml.org,2002:python/...`."""
    return "!!" + tag[len(_T):] if tag.startswith(_T) else tag


def _kind(value) -> str:
    names = {type(None): "null", bool: "a boolean", int: "an integer", float: "a float",
             str: "a string", list: "a list", dict: "a mapping"}
    return names.get(type(value), type(value).__name__)


def format_path(path: tuple) -> str | None:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not re.fullmatch(r"[A-Za-z_][\w-]{0,39}", str(part)):
            out += f"[{excerpt(part, 40)}]"  # spaces, a line break, 5,000 x's: quoted, short
        else:
            out += f".{part}" if out else part
    return out or None


def _convert(loader: _Loader, node, path: tuple, marks: dict):
    """Node -> plain Python value, recording marks; aliased nodes are converted again (a copy)."""
    line = node.start_mark.line + 1

    def fail(message: str, at: int = line, where: tuple = path):
        raise ConfigError(message, file=loader.file, line=at, key_path=format_path(where))

    if isinstance(node, yaml.ScalarNode):
        if node.tag in _AS_TEXT:
            return node.value
        if node.tag not in _SCALAR_TAGS:
            fail(f"unsupported YAML tag '{_short(node.tag)}'")
        try:
            return loader.construct_object(node)  # SafeConstructor: ints, floats, bools, null
        except Exception:  # e.g. `!!int abc`, `!!bool maybe`; `!!int ""` fails with IndexError
            fail(f"invalid {node.tag.rsplit(':', 1)[-1]} value {excerpt(node.value, 40)}")
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _T + "seq":
            fail(f"unsupported YAML tag '{_short(node.tag)}'")
        out = []
        for i, item in enumerate(node.value):
            marks[path + (i,)] = item.start_mark.line + 1
            out.append(_convert(loader, item, path + (i,), marks))
        return out
    if node.tag != _T + "map":
        fail(f"unsupported YAML tag '{_short(node.tag)}'")
    out, first_line = {}, {}
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        if key_node.tag == _MERGE:
            fail("merge keys '<<' are not supported; write the keys out explicitly", key_line)
        key = _convert(loader, key_node, path, {})
        if not isinstance(key, str):
            fail(f"mapping keys must be strings, got {_kind(key)}; quote the key if you meant text", key_line)
        if key in out:
            fail(f"duplicate key '{key}' (first defined at line {first_line[key]})", key_line, path + (key,))
        first_line[key] = marks[path + (key,)] = key_line
        out[key] = _convert(loader, value_node, path + (key,), marks)
    return out


def load_yaml_text(text: str, file: str = "<string>") -> LoadedYaml:
    """Parse one YAML document whose top level is a mapping; see the module docstring."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"file is larger than {MAX_BYTES // 1024} KiB, refused", file=file)
    loader = None
    try:
        loader = _Loader(text, file)                          # the reader checks characters here
        loader.get_event()                                    # STREAM-START
        root = None if loader.check_event(yaml.StreamEndEvent) else loader.compose_document()
        if not loader.check_event(yaml.StreamEndEvent):
            line = loader.peek_event().start_mark.line + 1
            raise ConfigError("expected a single YAML document, found another one", file=file, line=line)
        if not isinstance(root, yaml.MappingNode):
            got = "nothing (empty file)" if root is None else _kind(_convert(loader, root, (), {}))
            raise ConfigError(f"expected a mapping of sections at the top level, got {got}",
                              file=file, line=1 if root is None else root.start_mark.line + 1)
        marks: dict = {(): 1}
        data = _convert(loader, root, (), marks)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        message = e.problem or e.context or "syntax error"
        if e.context and e.problem and e.context_mark:
            message += f" ({e.context} at line {e.context_mark.line + 1})"
        raise ConfigError("invalid YAML: " + " ".join(message.split()), file=file,
                          line=mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as e:                      # e.g. a NUL or other control character
        raise ConfigError(f"invalid YAML: unacceptable character #x{e.character:04x}", file=file,
                          line=text.count("\n", 0, e.position) + 1) from None
    finally:
        if loader is not None:
            loader.dispose()
    return LoadedYaml(data=data, marks=marks, file=file)


def load_yaml(path: str | os.PathLike) -> LoadedYaml:
    """Read a config file (size and encoding checked first) and parse it with load_yaml_text."""
    file = os.fspath(path)
    if os.path.isdir(file):
        raise ConfigError("is a directory, expected a YAML file", file=file)
    try:
        with open(file, "rb") as f:
            raw = f.read(MAX_BYTES + 1)                       # never read more than the cap
    except FileNotFoundError:
        raise ConfigError("no such file", file=file) from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", file=file) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"file is larger than {MAX_BYTES // 1024} KiB, refused", file=file)
    try:
        text = raw.decode("utf-8-sig")                        # tolerate a BOM, nothing else
    except UnicodeDecodeError as e:
        raise ConfigError(f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})",
                          file=file, line=raw.count(b"\n", 0, e.start) + 1) from None
    return load_yaml_text(text, file)
