"""How `--help` shows parameters: flags bare, arguments by an upper-case name.

typer 0.2x prints a flag's type as `<bool>` (`--help -h <bool>`) and a required argument as
`{config}` in the usage line; people read `--no-progress` and `CONFIG` / `RUN_DIR`, as click
and argparse show them. typer has no setting for either, so this adjusts its two display
methods once, at import of the CLI, and leaves typer as it is where those methods differ (a
newer typer that already does it, or renames them).
"""

from __future__ import annotations


def plain_parameter_help() -> None:
    try:
        from typer import core
    except ImportError:  # pragma: no cover - typer is a dependency
        return
    option, argument = getattr(core, "TyperOption", None), getattr(core, "TyperArgument", None)
    if option is not None and hasattr(option, "display_type_rich"):
        shown = option.display_type_rich

        def display_type_rich(self, ctx):
            return None if getattr(self, "is_flag", False) else shown(self, ctx)
        option.display_type_rich = display_type_rich
    if argument is not None and hasattr(argument, "display_name_raw"):
        def display_name_raw(self) -> str:
            return self.metavar if self.metavar is not None else self.name.upper()

        def usage_display_name(self) -> str:
            name = display_name_raw(self)
            name = name if self.required else f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")
        argument.display_name_raw = property(display_name_raw)
        if hasattr(argument, "_usage_display_name"):
            argument._usage_display_name = usage_display_name
