"""An embedding store: a folder that pandas and pyarrow read, safe against kill -9 and full disks.

Layout (format 2)::

    STORE/store.json              identity: format 2, model sha256, effective preprocessing
                                  spec, dim, storage dtype (float32 or float16); written once
    STORE/commit.json             the commit record: generation counter, next free id, and for
                                  every committed shard its record count, vector rows, dtype,
                                  and each file's size and sha256. Replaced atomically (tmp,
                                  fsync, rename, fsync of the folder) by every commit.
    STORE/vectors/000001.npy      vectors of shard 1 (rows referenced by its meta ``row``)
    STORE/meta/000001.parquet     one row per record: path (display text, UTF-8 with
                                  ``\\xNN`` for undecodable bytes), path_bytes (the exact name,
                                  os.fsencode), size, mtime_ns, sha256, width, height, status
                                  (ok|error|deleted), error_kind, error, row
    STORE/journal/000002.{jsonl,vec}  the running writer's journal (see store_journal)
    STORE/damaged/                shards that ``repair`` took out of the commit record
    STORE/.lock                   held by the one writer

Readers trust only what ``commit.json`` lists: anything else in the folder (a backup
parquet, a tmp file, a shard a killed writer never committed) is ignored, and a writer
removes uncommitted shard files instead of adopting them. Opening checks sizes and the
``.npy`` headers against the commit record; :meth:`Store.verify` checks every sha256. The
latest record per ``path_bytes`` wins; ``pd.read_parquet("STORE/meta")`` shows the history
(it also reads stray files there; :meth:`Store.history` reads only committed shards).

A writer journals every record (flushed per batch, so a kill -9 loses at most the batch in
flight) and :meth:`StoreWriter.commit` seals the journal into a new immutable shard, so a
long embed becomes searchable as it goes and every reader sees one consistent commit.
The next writer seals what a killed one left, keeping only records whose line and vector
checksums verify.

Damage: ``vggsim store verify STORE`` (:func:`verify_store`) lists damaged files, and
``vggsim store repair STORE`` (:func:`repair`) moves the damaged shards' files to
``STORE/damaged/`` and drops them from the commit record. The files those shards held then
count as never embedded (or fall back to an older record of theirs), so running the same
``vggsim embed`` again re-embeds them. A missing or garbled ``commit.json`` is rebuilt by
``repair`` from the shards provably committed (each meta file names its shard id and
its vectors' sha256; copies, mismatched pairs and older shards are moved aside, not
adopted). A missing ``store.json`` cannot be repaired
(nothing says which model made the vectors): restore it or re-create the store.

Format-1 stores (older vggsim, no commit record) are refused with a message saying how to
re-create them.
"""

from __future__ import annotations

from vggsim.store.format import Block, Record, StoreIdentity
from vggsim.store.snapshot import Store
from vggsim.store.repair import RepairReport, repair, verify_store
from vggsim.store.verify import VerifyReport
from vggsim.store.writer import StoreWriter

__all__ = ["Block", "Record", "RepairReport", "Store", "StoreIdentity", "StoreWriter", "VerifyReport",
           "repair", "verify_store"]
