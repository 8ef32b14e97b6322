"""`jobtask completion bash|zsh`: a shell completion script, made from the parser itself so it
names every command and flag there is.

    source <(jobtask completion bash)       # in ~/.bashrc
    source <(jobtask completion zsh)        # in ~/.zshrc
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

__all__ = ["add_command", "bash_script"]


def add_command(sub: argparse._SubParsersAction[Any], top: argparse.ArgumentParser) -> None:
    p = sub.add_parser("completion", help="print a shell completion script (bash or zsh)")
    p.add_argument("shell", choices=["bash", "zsh"])
    p.set_defaults(run_server=_print_script, top_parser=top)


async def _print_script(args: argparse.Namespace) -> int:
    script = bash_script(args.top_parser)
    if args.shell == "zsh":
        script = "autoload -U +X bashcompinit && bashcompinit\n" + script
    print(script, end="")
    return 0


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _words(parser: argparse.ArgumentParser) -> list[str]:
    """What may follow a command: its subcommands, its flags and its fixed choices."""
    words = list(_subcommands(parser))
    for action in parser._actions:
        words.extend(o for o in action.option_strings if o.startswith("--"))
        if (
            not action.option_strings
            and action.choices
            and not isinstance(action, argparse._SubParsersAction)
        ):
            words.extend(str(c) for c in action.choices)
    return words


def bash_script(top: argparse.ArgumentParser) -> str:
    """A bash completion function: the command at position 1 (and a second level for `token`,
    `db`, `serve`), then that command's flags and choices."""
    cases = []
    for name, parser in _subcommands(top).items():
        cases.append(f"    {name}) words={shlex.quote(' '.join(_words(parser)))} ;;")
        for child, child_parser in _subcommands(parser).items():
            cases.append(
                f"    {name}/{child}) words={shlex.quote(' '.join(_words(child_parser)))} ;;"
            )
    commands = " ".join(_words(top))
    return "\n".join(
        [
            "# jobtask completion for bash (`source <(jobtask completion bash)`)",
            "_jobtask() {",
            '  local cur="${COMP_WORDS[COMP_CWORD]}" key words',
            '  if [ "$COMP_CWORD" -le 1 ]; then',
            f'    COMPREPLY=($(compgen -W "{commands}" -- "$cur")); return',
            "  fi",
            '  key="${COMP_WORDS[1]}"',
            '  if [ "$COMP_CWORD" -gt 2 ]; then key="${COMP_WORDS[1]}/${COMP_WORDS[2]}"; fi',
            '  case "$key" in',
            *cases,
            '    *) words="" ;;',
            "  esac",
            '  if [ -z "$words" ] && [ "$COMP_CWORD" -gt 2 ]; then',
            '    case "${COMP_WORDS[1]}" in',
            *(
                f"      {name}) words={shlex.quote(' '.join(_words(parser)))} ;;"
                for name, parser in _subcommands(top).items()
            ),
            "    esac",
            "  fi",
            '  COMPREPLY=($(compgen -W "$words" -- "$cur"))',
            "}",
            "complete -o default -F _jobtask jobtask",
            "",
        ]
    )
