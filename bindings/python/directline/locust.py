"""Load-testing a bot with Locust: ``directline.locust``, the ``DirectLineUser`` class.

Each simulated user is a Locust user (a greenlet) with its own conversation,
which it starts, listens to (the 3.0 WebSocket stream, or polling) and ends
when it stops. Tasks talk to the bot with ``say``, ``send``, ``upload``,
``reply`` and ``expect``; each reports to Locust under its own name, so the
statistics, charts and CSV reports show them::

    from locust import between, task
    from directline.locust import DirectLineUser

    class BotUser(DirectLineUser):
        wait_time = between(1, 3)

        @task
        def greet(self) -> None:
            self.say("hello")

    # locust -f locustfile.py --host http://127.0.0.1:3978 --headless -u 100 -r 10
    # with DIRECTLINE_SECRET in the environment (or --directline-secret)

What is reported (request type ``directline``):

- ``start conversation``: starting (or, with a token endpoint, fetching a
  token and joining) the conversation;
- ``listen``: from asking to listen until the stream (or the first poll)
  is online;
- ``send``: a send, until the service answered it;
- ``reply``: from the start of a send until the bot's first activity in
  answer to it that is not typing reached this user;
- ``first typing``: from the start of a send until the bot's first typing
  activity in answer to it (3.0 streams only: typing is never polled);
- ``upload``: an upload, until the service answered it;
- ``end conversation``: the endOfConversation a stopping 3.0 user sends.

A failure is a Locust failure named after the library's status (such as
``DL_ERR_THROTTLED: the service is throttling requests ... (HTTP 429
Throttled)``), and the task is abandoned: the
helper raises ``DirectLineFailure``, a ``RescheduleTask`` that Locust takes
as "go on with the next task". A 429 is reported every time it happens, and
the helper then waits the ``Retry-After`` the service asked for and sends
the same activity again (``throttle_retries`` times at most): the library's
own retries are turned off for this, so throttling shows in the report
rather than as slower sends.

Nothing here blocks the worker's gevent hub. Calls that wait on the network
(start, send, upload, end, close) run on a gevent thread pool of native
threads (``--directline-threads``, default 16, one pool per process), and
each user's receiving greenlet waits on its conversation's descriptor
(``Conversation.fileno()``) with ``gevent.socket.wait_read``, then takes
what is queued without waiting. A thousand users are a thousand descriptors
watched by the hub, not a thousand threads.

Requires ``pip install directline[locust]`` (Locust, and gevent with it).
Importing this module imports Locust, which patches the standard library
for gevent: import it from locustfiles only.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import gevent  # type: ignore[import-untyped]
import gevent.event  # type: ignore[import-untyped]
import gevent.socket  # type: ignore[import-untyped]
import gevent.threadpool  # type: ignore[import-untyped]
from locust import User, events
from locust.env import Environment
from locust.exception import RescheduleTask

from .client import Client
from .conversation import Conversation, FileItem
from .errors import DirectLineError, ThrottledError

__all__ = [
    "END",
    "LISTEN",
    "REPLY",
    "REQUEST_TYPE",
    "SEND",
    "START",
    "TYPING",
    "UPLOAD",
    "DirectLineFailure",
    "DirectLineUser",
    "Sent",
]

REQUEST_TYPE = "directline"
"""The request type of every event reported here (the "Type" column)."""
START = "start conversation"
LISTEN = "listen"
SEND = "send"
REPLY = "reply"
TYPING = "first typing"
UPLOAD = "upload"
END = "end conversation"

_T = TypeVar("_T")

DEFAULT_THREADS = 16
"""Native threads in a worker's pool for the calls that wait on the network."""


class DirectLineFailure(RescheduleTask):
    """A step failed; it was reported to Locust as a failure, and the task is abandoned.

    A ``RescheduleTask``: left uncaught, Locust goes on with the user's next
    task after its wait time. Catch it to go on within the task instead.

    Attributes:
        error: the library's error, or None (a reply that did not come, a
            conversation that ended or failed while waiting).
    """

    def __init__(self, message: str, error: DirectLineError | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error = error

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        # Locust names a failure by the exception's repr: the text alone.
        return self.message


@dataclass(frozen=True)
class Sent:
    """What ``send`` and ``upload`` return, and ``reply`` takes.

    Attributes:
        id: the activity's id at the service (3.0), or None (1.1).
        client_activity_id: the ``channelData.clientActivityID`` it carried
            (3.0 sends), or None.
        started: when the send started, on ``time.perf_counter()``'s clock
            (the first attempt, when a 429 made it wait and send again).
        received_before: how many activities this user had received when
            the send started; a reply is looked for among the later ones.
        result: the service's answer as the library returns it.
    """

    id: str | None
    client_activity_id: str | None
    started: float
    received_before: int
    result: dict[str, Any]


def failure_text(error: DirectLineError) -> str:
    """How a library error reads in Locust's failures: its status name, its message, the service's own words."""
    text = f"{error.name}: {error.message}"
    if error.service_message and error.service_message not in error.message:
        text += f" ({error.service_message})"
    return text


# --- Locust's command line -------------------------------------------------

def _add_options(parser: Any) -> None:
    # On the parser itself: Locust's own add_argument takes is_secret and
    # include_in_web_ui, an argument group's does not. --host is the endpoint.
    parser.add_argument("--directline-secret", env_var="DIRECTLINE_SECRET", default=None, is_secret=True,
                        help="the bot's Direct Line secret (better in DIRECTLINE_SECRET than on the command line)")
    parser.add_argument("--directline-token-endpoint", env_var="DIRECTLINE_TOKEN_ENDPOINT", default=None,
                        help="a token service (Copilot Studio's token URL) each user gets its token from")
    parser.add_argument("--directline-protocol", env_var="DIRECTLINE_PROTOCOL", default=None,
                        choices=["3.0", "1.1"], help="Direct Line version (default 3.0)")
    parser.add_argument("--directline-mode", env_var="DIRECTLINE_MODE", default=None,
                        choices=["auto", "websocket", "polling"],
                        help="how users receive: auto (the stream on 3.0 when libcurl can), websocket, polling")
    parser.add_argument("--directline-threads", env_var="DIRECTLINE_THREADS", type=int, default=None,
                        help=f"native threads per worker for sends, uploads and starts (default {DEFAULT_THREADS})")
    parser.add_argument("--directline-reply-timeout", env_var="DIRECTLINE_REPLY_TIMEOUT", type=float, default=None,
                        help="seconds to wait for a reply before it counts as a failure (default 30)")


events.init_command_line_parser.add_listener(_add_options)  # type: ignore[no-untyped-call]


# The variable behind each option, in the spelling configargparse reads.
_VARIABLES = {
    "directline_secret": ("DIRECTLINE_SECRET", str),
    "directline_token_endpoint": ("DIRECTLINE_TOKEN_ENDPOINT", str),
    "directline_protocol": ("DIRECTLINE_PROTOCOL", str),
    "directline_mode": ("DIRECTLINE_MODE", str),
    "directline_threads": ("DIRECTLINE_THREADS", int),
    "directline_reply_timeout": ("DIRECTLINE_REPLY_TIMEOUT", float),
}


def _from_environment(option: str) -> Any:
    variable, kind = _VARIABLES[option]
    text = os.environ.get(variable)
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{variable} must be {'an integer' if kind is int else 'a number'}, not {text!r}") from None


def _option(environment: Environment, name: str) -> Any:
    options = environment.parsed_options
    return None if options is None else getattr(options, name, None)


# --- One thread pool per process -------------------------------------------

_pool: Any = None


def _thread_pool(size: int) -> Any:
    """The process's pool, grown to ``size`` threads (checked by the settings) when it has fewer."""
    global _pool
    if _pool is None:
        _pool = gevent.threadpool.ThreadPool(size)
    elif _pool.maxsize < size:
        _pool.maxsize = size
    return _pool


def _outcome(function: Callable[..., Any], arguments: tuple[Any, ...]) -> tuple[bool, Any]:
    """Runs on a pool thread: (True, the result) or (False, the exception), never raising there.

    gevent prints every exception that leaves a pool task to stderr; this
    hands it to the waiting greenlet instead, which raises it.
    """
    try:
        return True, function(*arguments)
    except Exception as error:  # noqa: BLE001 - re-raised in the greenlet that waits
        return False, error


_CONFIGURATION_HINT = (" (the endpoint is --host; a credential is --directline-secret or DIRECTLINE_SECRET, "
                       "--directline-token-endpoint, or a token)")

# Clients shared by the users of one process, by their configuration.
_clients: dict[tuple[Any, ...], Client] = {}


def _close_clients(**_: Any) -> None:
    for client in _clients.values():
        client.close()
    _clients.clear()


events.quitting.add_listener(_close_clients)  # type: ignore[no-untyped-call]


# --- The user --------------------------------------------------------------

class DirectLineUser(User):
    """A Locust user with its own Direct Line conversation; subclass it and add tasks.

    Configure it with class attributes, or with Locust options (which win
    when given): ``host`` (``--host``: the Direct Line endpoint), ``secret``
    (``--directline-secret`` / ``DIRECTLINE_SECRET``), ``token_endpoint``
    (``--directline-token-endpoint``), ``protocol``
    (``--directline-protocol``), ``mode`` (``--directline-mode``),
    ``threads`` (``--directline-threads``), ``reply_timeout``
    (``--directline-reply-timeout``). Give one credential: a secret, a
    token endpoint, or a token: ``token`` (bound to one conversation, so
    fit for a single user) or, one per user, ``user_token()`` overridden.

    ``on_start`` starts the conversation and listens; ``on_stop`` ends it
    (3.0: endOfConversation) and frees it. A subclass that overrides them
    calls ``super()``. When a conversation ended (the bot's
    endOfConversation) or its listener failed, the next helper call starts
    a new one.

    Attributes:
        user_id: this user's id, ``user_id_prefix`` and a random suffix.
        conversation: the current ``directline.Conversation``, or None.
    """

    abstract = True

    secret: ClassVar[str | None] = None
    token: ClassVar[str | None] = None
    token_endpoint: ClassVar[str | None] = None
    protocol: ClassVar[str] = "3.0"
    mode: ClassVar[str] = "auto"
    """``"auto"`` (the stream on 3.0 when the libcurl in use can), ``"websocket"`` or ``"polling"``."""
    poll_interval: ClassVar[float] = 1.0
    threads: ClassVar[int] = DEFAULT_THREADS
    reply_timeout: ClassVar[float] = 30.0
    listen_timeout: ClassVar[float] = 30.0
    """Seconds ``on_start`` waits for the listener to be online before it reports a failure."""
    throttle_retries: ClassVar[int] = 5
    """How many times one send is sent again after a 429 (each 429 is reported)."""
    end_timeout: ClassVar[float] = 5.0
    """Seconds a stopping user waits for its endOfConversation's answer (never sent again)."""
    inbox_size: ClassVar[int] = 100
    """Received activities kept unread for ``reply`` and ``expect`` at most; the oldest are dropped."""
    user_id_prefix: ClassVar[str] = "dl_locust"
    """The service wants user ids that start with ``dl_`` in a start (3.0)."""
    client_options: ClassVar[Mapping[str, Any]] = {}
    """More ``directline.Client`` options (``timeout_ms``, ``headers``, ``bot_agent``...)."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.user_id = f"{self.user_id_prefix}-{uuid.uuid4().hex[:16]}"
        self.conversation: Conversation | None = None
        self._own_client: Client | None = None
        # (sequence number, arrival time, activity), oldest first.
        self._inbox: deque[tuple[int, float, dict[str, Any]]] = deque(maxlen=self._setting_int("inbox_size"))
        self._received = 0
        self._state = "closed"
        self._listen_error: DirectLineError | None = None
        # Set, and _news counted up, whenever the receiving greenlet brings
        # something; a waiter notes _news before it looks, so that nothing
        # brought while it looked (a report may yield) is slept through.
        self._arrived = gevent.event.Event()
        self._news = 0
        self._broken = False
        self._pump: Any = None
        # The start on the pool while it runs: a user killed meanwhile still
        # ends and frees what it returns.
        self._starting: Any = None
        self._resolved: dict[str, Any] | None = None

    # Configuration -----------------------------------------------------

    def _setting(self, name: str, option: str | None = None) -> Any:
        """The option when given, else this process's environment variable for it, else the attribute.

        A distributed run sends the master's options to every worker, over
        the worker's own: an option the master was not given arrives as
        None, and the worker's variable (DIRECTLINE_SECRET...) is read again.
        An empty value counts as not given.
        """
        value = _option(self.environment, option) if option else None
        if (value is None or value == "") and option:
            value = _from_environment(option)
        return getattr(self, name) if value is None or value == "" else value

    def _setting_int(self, name: str) -> int:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{type(self).__name__}.{name} must be an int, not {type(value).__name__}")
        return value

    def _settings(self) -> dict[str, Any]:
        """The options in effect, read once per user (at its start: a worker has its options by then)."""
        if self._resolved is None:
            try:
                self._resolved = self._read_settings()
            except (ValueError, TypeError) as error:
                # Nothing can start: reported there, as a start would be.
                raise self._fail(START, time.perf_counter(), f"configuration: {error}") from error
        return self._resolved

    def _read_settings(self) -> dict[str, Any]:
        threads = self._setting("threads", "directline_threads")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer of at least 1, not {threads!r}")
        reply_timeout = self._setting("reply_timeout", "directline_reply_timeout")
        if isinstance(reply_timeout, bool) or not isinstance(reply_timeout, (int, float)) or not reply_timeout > 0:
            raise ValueError(f"reply_timeout must be a number of seconds above 0, not {reply_timeout!r}")
        return {
            "protocol": self._setting("protocol", "directline_protocol"),
            "mode": self._setting("mode", "directline_mode"),
            "threads": threads,
            "reply_timeout": float(reply_timeout),
        }

    def _client(self) -> Client:
        """The process's client for this configuration (the user's own when ``user_token()`` gives a token)."""
        protocol = self._settings()["protocol"]
        secret = self._setting("secret", "directline_secret") or None
        token_endpoint = self._setting("token_endpoint", "directline_token_endpoint") or None
        options = dict(self.client_options)
        # Every 429 is reported and waited for here, not retried inside.
        options.setdefault("retry", {"max_attempts": 1})
        endpoint = self.host or None
        own_token = self._blocking(self.user_token)
        if own_token is not None:
            self._own_client = Client(endpoint, token=own_token, protocol=protocol, **options)
            return self._own_client
        key = (endpoint, secret, self.token, token_endpoint, protocol, repr(sorted(options.items())))
        client = _clients.get(key)
        if client is None or client.closed:
            client = Client(endpoint, secret=secret, token=self.token, token_endpoint=token_endpoint,
                            protocol=protocol, **options)
            _clients[key] = client
        return client

    def user_token(self) -> str | None:
        """A token for this user alone, or None (the default) to use the class's credential.

        Override it to get each user a token of its own from your token
        service (it runs on a pool thread, so it may block). A token is
        bound to one conversation: the ``token`` attribute, shared by every
        user, suits one user only.
        """
        return None

    # Reporting ---------------------------------------------------------

    def _report(self, name: str, started: float, *, ended: float | None = None, length: int = 0,
                exception: BaseException | None = None) -> None:
        finished = time.perf_counter() if ended is None else ended
        elapsed = finished - started
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE, name=name, response_time=elapsed * 1000.0, response_length=length,
            response=None, context=self.context(), exception=exception,
            start_time=time.time() - (time.perf_counter() - started))

    def _fail(self, name: str, started: float, message: str, error: DirectLineError | None = None) -> DirectLineFailure:
        failure = DirectLineFailure(message, error)
        self._report(name, started, exception=failure)
        return failure

    def _blocking(self, function: Callable[..., _T], *arguments: Any, track: bool = False) -> _T:
        """Runs a call that may wait on the network on the pool, so the hub goes on meanwhile.

        With ``track``, the pending call is kept in ``_starting`` until it
        returns, for ``_close`` to collect if this greenlet is killed first.
        """
        pool = _thread_pool(self._settings()["threads"])
        pending = pool.spawn(_outcome, function, arguments)
        if track:
            self._starting = pending
        outcome: tuple[bool, Any] = pending.get()
        if track:
            self._starting = None
        succeeded, value = outcome
        if not succeeded:
            raise value
        result: _T = value
        return result

    def _call(self, name: str, function: Callable[[], _T], *, track: bool = False) -> tuple[_T, float]:
        """One reported call, waiting out and reporting each 429; (its result, when its first attempt started)."""
        first = time.perf_counter()
        for attempt in itertools.count():
            began = time.perf_counter()
            try:
                result = self._blocking(function, track=track)
            except ThrottledError as error:
                failure = self._fail(name, began, failure_text(error), error)
                if attempt >= self._setting_int("throttle_retries"):
                    raise failure from error
                wait = (error.retry_after_ms if error.retry_after_ms is not None else 1000) / 1000.0
                gevent.sleep(wait)
                continue
            except DirectLineError as error:
                raise self._fail(name, began, failure_text(error), error) from error
            self._report(name, began)
            return result, first
        raise AssertionError("unreachable")  # pragma: no cover

    # Lifecycle ---------------------------------------------------------

    def on_start(self) -> None:
        """Starts this user's conversation and listens to it (reported as ``start conversation`` and ``listen``).

        A failure is reported and does not stop the user: the next helper
        call tries again.
        """
        try:
            self._open()
        except DirectLineFailure:
            pass

    def on_stop(self) -> None:
        """Ends the conversation (3.0, reported as ``end conversation``) and frees it.

        The end is sent once and waited for ``end_timeout`` seconds at most
        (Locust runs ``on_stop`` to its end before ``--stop-timeout``
        applies); the conversation is freed either way.
        """
        self._close(end=True)

    def _open(self) -> Conversation:
        settings = self._settings()
        started = time.perf_counter()
        try:
            # A bad configuration (no credential, a bad endpoint) fails here.
            client = self._client()
        except (ValueError, TypeError) as error:
            text = failure_text(error) if isinstance(error, DirectLineError) else f"configuration: {error}"
            raise self._fail(START, started, text + _CONFIGURATION_HINT) from error
        user_id = self.user_id if settings["protocol"] == "3.0" else None
        conversation, _ = self._call(START, lambda: client.start_conversation(user_id), track=True)
        self.conversation = conversation
        self._inbox.clear()
        self._listen_error = None
        self._broken = False
        self._state = "connecting"
        started = time.perf_counter()
        try:
            self._blocking(conversation.listen, settings["mode"], self.poll_interval)
        except DirectLineError as error:
            self._broken = True  # the next helper call starts afresh
            raise self._fail(LISTEN, started, failure_text(error), error) from error
        self._pump = gevent.spawn(self._receive, conversation)
        deadline = started + self.listen_timeout
        while self._state in ("connecting", "reconnecting") and self._listen_error is None:
            if not self._wait_for_news(deadline, self._news):
                self._broken = True
                raise self._fail(LISTEN, started, f"not online within {self.listen_timeout:g} s "
                                 f"(state {self._state})")
        if self._listen_error is not None:
            raise self._fail(LISTEN, started, failure_text(self._listen_error), self._listen_error)
        self._report(LISTEN, started)
        return conversation

    def _close(self, *, end: bool) -> None:
        conversation, self.conversation = self.conversation, None
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.kill(block=True)
        if conversation is None and self._starting is not None:
            # Killed while starting: what the start returns is still ours.
            pending, self._starting = self._starting, None
            try:
                succeeded, value = pending.get(timeout=self.end_timeout)
            except gevent.Timeout:
                succeeded, value = False, None  # still starting: the binding frees it when dropped
            conversation = value if succeeded and isinstance(value, Conversation) else None
        if conversation is None:
            return
        try:
            if end and self._settings()["protocol"] == "3.0" and self._state not in ("ended", "failed"):
                self._end(conversation)
        finally:
            self._state = "closed"
            # Neither waits on the network: a call still in flight on a pool
            # thread (an end that timed out) keeps the handle until it returns.
            conversation.close()
            if self._own_client is not None:
                own, self._own_client = self._own_client, None
                own.close()

    def _end(self, conversation: Conversation) -> None:
        """Sends endOfConversation once, waiting ``end_timeout`` seconds at most; reported as ``end conversation``."""
        started = time.perf_counter()
        try:
            with gevent.Timeout(self.end_timeout):
                self._blocking(conversation.end, self.user_id)
        except gevent.Timeout:
            self._fail(END, started,
                       f"no answer within end_timeout ({self.end_timeout:g} s); the conversation was freed")
        except DirectLineError as error:
            self._fail(END, started, failure_text(error), error)
        else:
            self._report(END, started)

    def _conversation(self) -> Conversation:
        """The conversation to use: a new one when there is none, or it ended or failed."""
        if self.conversation is not None and not self._finished():
            return self.conversation
        self._close(end=False)
        return self._open()

    def _finished(self) -> bool:
        return self._broken or self._state in ("ended", "failed") or self._listen_error is not None

    # Receiving ---------------------------------------------------------

    def _receive(self, conversation: Conversation) -> None:
        """This user's receiving greenlet: waits on the descriptor, takes what is queued."""
        descriptor = conversation.fileno()
        while True:
            gevent.socket.wait_read(descriptor)
            try:
                result = conversation.next(0)
            except DirectLineError as error:
                self._listen_error = error
                self._state = "failed"
                self._news += 1
                self._arrived.set()
                return
            now = time.perf_counter()
            for activity in result["activities"]:
                self._inbox.append((self._received, now, activity))
                self._received += 1
            self._state = result["state"]
            self._news += 1
            self._arrived.set()

    def _wait_for_news(self, deadline: float, seen: int) -> bool:
        """Waits until the receiving greenlet has brought something since ``_news`` was ``seen``.

        False at the deadline. ``seen`` is read before the caller looked at
        the inbox: what arrived while it looked counts as news at once.
        """
        while self._news == seen:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return False
            self._arrived.clear()
            if self._news != seen:
                break
            self._arrived.wait(remaining)
        return True

    def _from_bot(self, activity: Mapping[str, Any]) -> bool:
        sender = activity.get("from")
        sender_id = sender.get("id") if isinstance(sender, Mapping) else sender
        return sender_id != self.user_id

    # Helpers for tasks -------------------------------------------------

    def _with_client_activity_id(self, activity: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """A copy of a 3.0 activity from this user with a ``channelData.clientActivityID`` (1.1: as given)."""
        outgoing = dict(activity)
        if self._settings()["protocol"] != "3.0":
            return outgoing, None
        outgoing.setdefault("from", {"id": self.user_id})
        channel_data = dict(outgoing.get("channelData") or {})
        client_activity_id: str = channel_data.setdefault("clientActivityID", uuid.uuid4().hex)
        outgoing["channelData"] = channel_data
        return outgoing, client_activity_id

    def send(self, activity: Mapping[str, Any]) -> Sent:
        """Sends an activity (3.0) or message (1.1); reported as ``send``.

        ``from`` defaults to this user. On 3.0 a
        ``channelData.clientActivityID`` is added unless there is one, so
        that a send repeated after a 429 is the same activity.

        Returns:
            a ``Sent``, for ``reply``.

        Raises:
            DirectLineFailure: the send failed (reported).
        """
        conversation = self._conversation()
        outgoing, client_activity_id = self._with_client_activity_id(activity)
        if self._settings()["protocol"] != "3.0":
            outgoing.setdefault("from", self.user_id)
        received_before = self._received
        result, started = self._call(SEND, lambda: conversation.send_activity(outgoing))
        return Sent(result.get("id"), client_activity_id, started, received_before, result)

    def say(self, text: str, timeout: float | None = None) -> dict[str, Any]:
        """Sends a text message, then waits for the bot's reply (``send``, ``reply``, ``first typing``).

        Returns:
            the bot's first activity in answer that is not typing: usually a
            message, but whatever the bot sent first (an endOfConversation
            has no text).

        Raises:
            DirectLineFailure: the send failed, or no reply came within
                ``timeout`` (default ``reply_timeout``) seconds (reported).
        """
        message: dict[str, Any] = {"text": text}
        if self._settings()["protocol"] == "3.0":
            message["type"] = "message"
        return self.reply(self.send(message), timeout)

    def upload(self, files: Sequence[FileItem], *, activity: Mapping[str, Any] | None = None) -> Sent:
        """Uploads files (and optionally the activity carrying them) in one request; reported as ``upload``.

        ``files`` as ``Conversation.upload`` takes them: paths, or dicts with
        ``path`` or ``data`` and optionally ``content_type`` and ``filename``.
        An activity gets a ``channelData.clientActivityID`` (3.0) as in
        ``send``, so that an upload repeated after a 429 is the same one.
        Pass the result to ``reply`` to wait for the bot's answer.

        Raises:
            DirectLineFailure: the upload failed (reported).
        """
        conversation = self._conversation()
        outgoing, client_activity_id = (None, None) if activity is None else self._with_client_activity_id(activity)
        received_before = self._received
        result, started = self._call(UPLOAD, lambda: conversation.upload(self.user_id, files, activity=outgoing))
        return Sent(result.get("id"), client_activity_id or result.get("clientActivityID"), started,
                    received_before, result)

    def reply(self, sent: Sent, timeout: float | None = None) -> dict[str, Any]:
        """Waits for the bot's first activity in answer to ``sent`` that is not typing.

        In answer: received after the send started, from someone other than
        this user, and replying to the sent activity (``replyToId``) or to
        nothing named. On 1.1, whose messages name nothing, and with bots
        that set no ``replyToId``, that is the bot's first message after the
        send: a late answer to an earlier send that timed out is taken for
        this one's. Reports ``reply``, and ``first typing`` when a typing
        activity in answer came first, both timed from the start of the
        send; what it matched is taken out of the inbox ``expect`` reads.

        Raises:
            DirectLineFailure: nothing within ``timeout`` (default
                ``reply_timeout``) seconds of the send's start, or the
                conversation ended or failed first (reported as ``reply``).
        """
        wait = self._settings()["reply_timeout"] if timeout is None else float(timeout)
        deadline = sent.started + wait
        typing_reported = False
        while True:
            seen = self._news
            typing: list[tuple[int, float, dict[str, Any]]] = []
            answer = None
            for entry in self._inbox:
                sequence, _, activity = entry
                if sequence < sent.received_before or not self._from_bot(activity):
                    continue
                reply_to = activity.get("replyToId")
                if sent.id is not None and reply_to is not None and reply_to != sent.id:
                    continue
                if activity.get("type") == "typing":
                    typing.append(entry)
                    continue
                answer = entry
                break
            for entry in typing:
                self._inbox.remove(entry)
            if answer is not None:
                self._inbox.remove(answer)
            if typing and not typing_reported:
                typing_reported = True
                self._report(TYPING, sent.started, ended=typing[0][1])
            if answer is not None:
                self._report(REPLY, sent.started, ended=answer[1], length=len(str(answer[2].get("text") or "")))
                return answer[2]
            if self._listen_error is not None:
                raise self._fail(REPLY, sent.started, failure_text(self._listen_error), self._listen_error)
            if self._state == "ended":
                raise self._fail(REPLY, sent.started, "the conversation ended before the reply")
            if not self._wait_for_news(deadline, seen):
                raise self._fail(REPLY, sent.started, f"no reply within {wait:g} s")

    def expect(self, predicate: Callable[[dict[str, Any]], bool], timeout: float | None = None,
               name: str | None = "expect") -> dict[str, Any]:
        """Waits for the first received activity that ``predicate`` accepts, and takes it out of the inbox.

        Looks at what was received and not yet taken (by ``reply`` or an
        earlier ``expect``; the newest ``inbox_size`` at most), oldest
        first, then at what arrives. It never starts a conversation anew:
        what the current one received stays readable after it ended.
        Reported under ``name`` (None: not reported), timed from this call.

        Raises:
            DirectLineFailure: nothing matched within ``timeout`` (default
                ``reply_timeout``) seconds, or the conversation ended or
                failed first.
        """
        if self.conversation is None:
            self._conversation()
        wait = self._settings()["reply_timeout"] if timeout is None else float(timeout)
        started = time.perf_counter()
        deadline = started + wait
        while True:
            seen = self._news
            # A copy: the predicate is the caller's code, and may yield to the receiving greenlet.
            found = next((entry for entry in list(self._inbox) if predicate(entry[2])), None)
            if found is not None:
                self._inbox.remove(found)
                if name is not None:
                    self._report(name, started, ended=max(started, found[1]))
                return found[2]
            if self._listen_error is not None:
                failure = DirectLineFailure(failure_text(self._listen_error), self._listen_error)
            elif self._state == "ended":
                failure = DirectLineFailure("the conversation ended before anything expected came")
            elif not self._wait_for_news(deadline, seen):
                failure = DirectLineFailure(f"nothing expected within {wait:g} s")
            else:
                continue
            if name is not None:
                self._report(name, started, exception=failure)
            raise failure
