"""A structural check of the fragmented MP4 files the recorder writes, for the server to refuse at ingest what
is not one (garbage, a truncated file, a fragment of a track its recording does not have) before storing it.

Only box headers are read (media/mp4box.py): the top-level boxes must tile the file exactly; an init segment holds
``ftyp`` and ``moov`` (whose ``trak/tkhd`` boxes give the track ids); a media fragment holds ``moof`` then ``mdat``,
and every ``moof/traf/tfhd`` names a track id of its init. Decoding is not attempted: that is ffprobe's job.
"""

from __future__ import annotations

from typing import BinaryIO

from media import mp4box
from media.mp4box import Mp4Error as Fmp4Error

__all__ = ["Fmp4Error", "check", "check_media", "init_track_ids"]


def init_track_ids(fh: BinaryIO, size: int) -> set[int]:
    """Check an init segment; return the track ids its moov declares."""
    ids = {t.track_id for t in mp4box.init_tracks(fh, size)}
    if not ids:
        raise Fmp4Error("the init segment's 'moov' declares no track")
    return ids


def check_media(fh: BinaryIO, size: int, track_ids: set[int] | None) -> None:
    """Check a media fragment; with `track_ids` (from its init), every track it names must be one of them."""
    top = mp4box.walk(fh, 0, size)
    kinds = [b.kind for b in top]
    if "moof" not in kinds or "mdat" not in kinds or kinds.index("moof") > kinds.index("mdat"):
        raise Fmp4Error(f"a media fragment needs a 'moof' box then an 'mdat' box; found {kinds[:8]}")
    if track_ids is None:
        return
    for moof in (b for b in top if b.kind == "moof"):
        for traf in mp4box.children(fh, moof, "traf"):
            for tfhd in mp4box.children(fh, traf, "tfhd"):
                track = mp4box.u32(fh, tfhd.start + 4)
                if track not in track_ids:
                    raise Fmp4Error(f"the fragment is for track id {track}; its init has {sorted(track_ids)}")


def check(fh: BinaryIO, size: int, kind: str, init: BinaryIO | None = None, init_size: int = 0) -> None:
    """Check one fragment as the manifest's `kind` says ("init" or "media"), against its init if known."""
    if kind == "init":
        init_track_ids(fh, size)
    else:
        check_media(fh, size, init_track_ids(init, init_size) if init is not None else None)
