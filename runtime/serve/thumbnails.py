"""Thumbnails of stored images for the web page, reachable only by a record id of the store.

The client names a record by its integer id in a store snapshot (``Match.id`` from a search,
with the ``snapshot`` the answer names), never by a path: the file opened is always the path
that snapshot recorded, so no request can reach a file outside the store. A snapshot is named
by its content (:attr:`Store.snapshot_id`, generation and digest), not only its generation:
another store put in the same folder can reach the same generation, and a thumbnail asked for
a search of the first must not show the second's photo (410). A request that names only a
``generation`` is answered while that generation is known as one store's; once two stores
were seen at it, it is 410 too. The file must
still be the one that was embedded (same size and mtime as recorded), or the answer is
410; a file gone since is 404. Decoding goes through :func:`vggsim.images.decode.open_image` (the
allowlist, the pixel limit) and waits for its bytes in the shared memory budget, like every
other decode of the service. No FastAPI here: the routes are in ``page.py``.
"""

from __future__ import annotations

import io
import os
import re
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageOps

from vggsim.images.budget import MemoryBudget, Reservation
from vggsim.images.decode import DEFAULT_MAX_PIXELS, open_image
from vggsim.errors import ImageError, StoreError
from vggsim.store import Store

#: Longest side of a thumbnail, in pixels (the page shows them at up to 160 CSS pixels; 2x for HiDPI).
THUMBNAIL_SIZE = 320
#: How many recent snapshots are kept, so thumbnails of a search still resolve after a commit lands.
SNAPSHOTS_KEPT = 4
#: How many generations (with the digest seen at each, and those seen with two) are remembered.
AMBIGUOUS_KEPT = 256
#: The longest a thumbnail waits for decode memory before it gives up (503).
BUDGET_WAIT_S = 10.0
_ID = re.compile(r"[0-9]{1,12}")
_SNAPSHOT = re.compile(r"g[0-9]{1,12}-[0-9a-f]{16}")


class ThumbnailError(Exception):
    """A refused thumbnail: an HTTP status, a machine-readable code and a one-line message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def parse_id(text: str) -> int:
    """The record id in a URL: decimal digits only (no sign, no path, no ``..``), else 404."""
    if not _ID.fullmatch(text):
        raise ThumbnailError(404, "not_found", "no such record: a thumbnail is named by a record id (an integer)")
    return int(text)


def parse_generation(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    if not _ID.fullmatch(text):
        raise ThumbnailError(400, "bad_request", "generation must be a non-negative integer")
    return int(text)


def parse_snapshot(text: str | None) -> str | None:
    if text is None or text == "":
        return None
    if not _SNAPSHOT.fullmatch(text):
        raise ThumbnailError(400, "bad_request", "snapshot must be a store snapshot id as a search answer names it "
                             "(g<generation>-<16 hex digits>)")
    return text


class Thumbnailer:
    """Makes JPEG thumbnails of a store's records; thread-safe (FastAPI runs it in its thread pool)."""

    def __init__(self, snapshot: Callable[[], Store | None], budget: MemoryBudget | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, size: int = THUMBNAIL_SIZE) -> None:
        self._snapshot = snapshot
        self._budget = budget or MemoryBudget(128 * 1024 * 1024)
        self._max_pixels, self._size = max_pixels, size
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, Store] = OrderedDict()  # by snapshot id
        self._digests: OrderedDict[int, str] = OrderedDict()  # generation -> the digest last seen at it
        self._ambiguous: OrderedDict[int, None] = OrderedDict()  # generations seen with two contents

    def remember(self, store: Store) -> None:
        """Keep ``store`` among the recent snapshots: a search answered from it names it, and the page
        asks for the thumbnails of its matches afterwards, maybe after the next commit."""
        with self._lock:
            seen = self._digests.get(store.generation)
            if seen is not None and seen != store.digest:  # another store at this generation
                self._ambiguous[store.generation] = None
                while len(self._ambiguous) > AMBIGUOUS_KEPT:
                    self._ambiguous.popitem(last=False)
            self._digests[store.generation] = store.digest
            self._digests.move_to_end(store.generation)
            while len(self._digests) > AMBIGUOUS_KEPT:
                self._digests.popitem(last=False)
            self._recent[store.snapshot_id] = store
            self._recent.move_to_end(store.snapshot_id)
            while len(self._recent) > SNAPSHOTS_KEPT:
                self._recent.popitem(last=False)

    def _store(self, generation: int | None, snapshot: str | None = None) -> Store:
        """The snapshot named (``snapshot``, else ``generation``, else the current one), or 410 if it is no
        longer known (or the generation was seen with two stores)."""
        try:
            current = self._snapshot()
        except StoreError as exc:
            raise ThumbnailError(503, "store_unavailable", str(exc)) from None
        if current is None:
            raise ThumbnailError(404, "no_store", "the service has no store (start it with --store)")
        self.remember(current)
        if snapshot is not None:
            with self._lock:
                named = self._recent.get(snapshot)
            if named is None:
                raise ThumbnailError(410, "store_changed", f"store snapshot {snapshot} is no longer known (now "
                                     f"{current.snapshot_id}): search again")
            return named
        if generation is None:
            return current
        with self._lock:
            if generation in self._ambiguous:
                raise ThumbnailError(410, "store_changed", f"store generation {generation} was seen with two "
                                     "different stores (one replaced the other): search again, and name the "
                                     "snapshot the answer gives")
            found = next((s for s in self._recent.values() if s.generation == generation), None)
        if found is None and generation > current.generation:
            raise ThumbnailError(404, "not_found", f"store generation {generation} does not exist (now "
                                 f"{current.generation})")
        if found is None:
            raise ThumbnailError(410, "store_changed",
                                 f"store generation {generation} is no longer current (now {current.generation}): "
                                 "search again")
        return found

    def thumbnail(self, record_id: str, generation: str | None = None, snapshot: str | None = None) -> bytes:
        """The JPEG bytes of the thumbnail of record ``record_id``; ThumbnailError otherwise."""
        number, wanted, named = parse_id(record_id), parse_generation(generation), parse_snapshot(snapshot)
        store = self._store(wanted, named)
        try:
            records = store.records()
        except StoreError:
            current = self._snapshot()
            if current is None or current.snapshot_id == store.snapshot_id:
                raise  # the current snapshot does not read: damage (409, naming store verify)
            # an older snapshot whose files were replaced since (the store re-created or replaced in place)
            raise ThumbnailError(410, "store_changed", f"store snapshot {store.snapshot_id} can no longer be read "
                                 f"(the store changed since; now {current.snapshot_id}): search again") from None
        if not 0 <= number < len(records):  # the regex already refuses a sign; never index from the end
            raise ThumbnailError(404, "not_found", f"no record {number} in store generation {store.generation}")
        record = records[number]
        if record.status != "ok":
            raise ThumbnailError(404, "not_found", f"record {number} has no image (it failed to embed)")
        return self._render(record.path, number, record.size, record.mtime_ns)

    def _render(self, path: str, number: int, size: int | None, mtime_ns: int | None) -> bytes:
        name = f"record {number}"  # errors name the record, not the server's file system
        try:
            # Non-blocking: a FIFO put in the file's place must not hang a thread in open().
            # The fstat and the decode below use this one handle, whatever the name points to later.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise ThumbnailError(404, "file_missing", f"{name}: the file is no longer there") from None
        except OSError as exc:
            raise ThumbnailError(404, "file_unreadable", f"{name}: cannot read the file ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as fp:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size != size or info.st_mtime_ns != mtime_ns:
                raise ThumbnailError(410, "file_changed", f"{name}: the file changed since it was embedded")
            held: list[Reservation | None] = []
            try:
                image = open_image(fp, self._max_pixels, before_load=self._admit(info.st_size, held), name=name)
                return self._encode(image, name)
            except ImageError as exc:
                if None in held:  # open_image turned our refusal into an ImageError
                    raise ThumbnailError(503, "busy", "the service is busy decoding: try again") from None
                raise ThumbnailError(422, exc.kind, f"{name}: cannot decode it now ({exc.reason})") from None
            finally:
                for reservation in held:
                    if reservation is not None:
                        reservation.release()

    def _admit(self, file_size: int, held: list[Reservation | None]) -> Callable[[Any], None]:
        """A before_load hook: shrink JPEGs while decoding (draft), then wait for the memory the decode needs."""
        def before_load(image: Image.Image) -> None:
            if image.format in ("JPEG", "MPO"):
                image.draft("RGB", (self._size, self._size))  # decode at 1/2..1/8 scale: less memory, faster
            need = file_size + image.size[0] * image.size[1] * 4
            deadline = time.monotonic() + BUDGET_WAIT_S
            reservation = self._budget.acquire(need, lambda: time.monotonic() > deadline)
            held.append(reservation)
            if reservation is None:  # None in ``held`` tells _render it was the budget
                raise TimeoutError("decode memory budget")
        return before_load

    def _encode(self, image: Image.Image, name: str) -> bytes:
        try:
            image.thumbnail((self._size, self._size), Image.Resampling.BICUBIC)
            image = ImageOps.exif_transpose(image)  # shown as a viewer shows it (cheap at this size)
            if image.mode not in ("RGB", "L"):
                image = image.convert("RGB")
            out = io.BytesIO()
            image.save(out, "JPEG", quality=82)
        except Exception as exc:  # noqa: BLE001 - an odd mode Pillow cannot convert: one line, no traceback
            raise ThumbnailError(422, "cannot_render", f"{name}: cannot make a thumbnail ({type(exc).__name__})") from None
        return out.getvalue()
