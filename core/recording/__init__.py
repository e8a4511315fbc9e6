"""flamecam recordings (``.fcrec``): one append-only binary file per tracked sequence.

A recording is written incrementally while tracking runs and stays readable whatever happens
to the writer: records are buffered in memory and written + ``fsync``-ed at least every
``flush_interval_s`` (1 s by default), so a crash or ``kill -9`` loses at most the last
unflushed second; a full disk raises :class:`RecordingError` saying what is saved, and the
file is cut back to its last complete record. The loader reads records in order and stops
cleanly at the first truncated or corrupt one (the tail a crash leaves), reporting how many
bytes it discarded. ``python -m core.recording --describe`` prints this documentation;
``python -m core.recording REC`` prints a summary of a recording.

File layout (format version 1.1; all integers little-endian)
------------------------------------------------------------

Header, 16 bytes::

    offset  size  field
    0       8     magic  b"\\x89FCREC\\r\\n"  (the 0x89 byte and CR LF catch 7-bit and text-mode copies)
    8       2     uint16 major version (1; a reader refuses a newer major version)
    10      2     uint16 minor version (1; a newer minor only adds record kinds or metadata keys; 1.0
                  files have no SEGMENT records and read as one segment)
    12      4     uint32 CRC-32 (zlib / IEEE 802.3) of bytes 0..11

Then records, back to back, until the end of the file::

    offset  size  field
    0       4     uint32 L, payload length in bytes
    4       1     uint8 record kind (below)
    5       L     payload
    5+L     4     uint32 CRC-32 of bytes 0 .. 5+L-1 of this record (length, kind and payload)

A record whose 9 + L bytes run past the end of the file is a truncated tail; one whose CRC does
not match is corrupt. The reader stops at the first of either and reports the bytes from there
to the end of the file as discarded. Records of an unknown kind with a valid CRC are skipped.

Record kinds:

1. ``META``, always the first record, exactly once. UTF-8 JSON object (strict JSON: non-finite
   numbers are written as null) with the keys of :class:`RecordingMeta`:
   ``schema_version`` (1), ``app_version``, ``model_kind``, ``model_name``, ``model_path``,
   ``model_sha256`` (SHA-256 of the model file, ``HeadModel.source_sha256``), ``num_shape`` (S),
   ``num_expr`` (E), ``expression_names`` (list of E names or null), ``image_width``,
   ``image_height``, ``source`` (free text: camera, file, ...), ``frame_rate_hz`` (nominal, or
   null), ``camera_mode`` ("perspective" | "ortho"), ``focal_mode`` ("fixed", "auto", "profile",
   "metadata", ...), ``focal_prior`` (object or null), ``landmark_count`` (L, 0 when landmarks
   are not stored), ``created_utc`` (ISO 8601), ``extra`` (free-form object), plus two keys that
   make the file self-describing: ``frame_fields``, the per-frame layout as a list of
   ``[name, numpy dtype string, shape]``, and ``enums``, the codes of ``focal_state`` and
   ``tracking_state``.
2. ``IDENTITY``: int64 ``frame_index`` then S float32 ``shape`` coefficients (8 + 4·S bytes).
   The identity applies from that frame index on, until a record with a larger start index; of
   records with the same start index the later one in the file wins (so an identity refined
   after the fact can be written for frames already recorded). Written only when it changes.
   Frames before every identity record get zeros (the mean identity) in ``shape_per_frame``.
3. ``FRAME``: one tracked frame, a packed fixed-size struct (numpy structured dtype
   :func:`frame_dtype`, no padding; 126 + 4·E + 8·L bytes)::

       offset        type          field
       0             int64         frame_index        index of the source frame
       8             float64       timestamp_s        source time in seconds
       16            float32[E]    expr               expression coefficients
       16+4E         float32[3]    jaw_pose           axis-angle (FLAME jaw joint)
       28+4E         float32[3]    neck_pose          axis-angle (FLAME neck joint)
       40+4E         float32[6]    eyes_pose          axis-angle, left eye then right eye
       64+4E         float32[3]    rotation           head rotation, axis-angle about the model origin
       76+4E         float32[3]    translation        metres, camera space (OpenCV axes):
                                                      X_cam = diag(1,-1,-1)·posed + translation
       88+4E         float32 x4    fx, fy, cx, cy     intrinsics in pixels (pixel i covers [i, i+1))
       104+4E        float32       rho_per_m          pseudo-perspective ρ = 1/Z0 (0 in ortho mode)
       108+4E        float32       focal_sigma_px     1σ uncertainty of the focal length
       112+4E        float32       fit_error_px       landmark fit error (NaN without a fit)
       116+4E        float32       confidence         in [0, 1]
       120+4E        float32       scale_px_per_m     ortho mode's weak-perspective scale, else NaN
       124+4E        uint8         focal_state        0 fixed, 1 not_observable, 2 estimating, 3 converged
       125+4E        uint8         tracking_state     0 tracking, 1 lost, 2 reacquired, 3 no_face
       126+4E        float32[L,2]  landmarks_px       detected landmarks (x, y) in pixels, NaN when
                                                      no face; present only when L > 0

   (The total is 126 + 4·E + 8·L bytes.) Pose names and conventions are FLAME's / flamecam's:
   the layer poses neck, jaw and eyes by LBS, rotates the head by ``rotation`` about the model
   origin, and ``core.camera.model_to_camera`` places it with ``translation``.
4. ``END``: UTF-8 JSON summary written by ``close()``: frame and identity counts, first/last
   frame index and timestamp, ``closed_utc``, ``ended_by`` and the caller's own keys. Its
   absence means the writer did not close (crash, kill, full disk): the loader reports
   ``complete=False``.
5. ``SEGMENT`` (since 1.1): UTF-8 JSON object starting a segment (one person, one camera set-up;
   ``core.segments``): ``segment_id`` (0, 1, ...), ``frame_index`` and ``timestamp_s`` of its first
   frame, ``kind`` ("start", "scene_cut": a shot cut, the focal length was estimated afresh,
   "person_change": another person in the same shot, the focal length kept), ``reset_focal``,
   ``reason`` (for people) and ``scores`` (the evidence). Written before the segment's first frame.
   A segment runs until the next SEGMENT record; frames before the first one are segment 0. Its
   identity is given by IDENTITY records as for any frame (each segment starts with its own).
   Readers of format 1.0 skip these records (an unknown kind) and see one identity history.

The reader memory-maps the file, checks each record's CRC, joins the frame payloads and views
them through the structured dtype (10,000 frames with landmarks, ~41 MB, load in well under a
second). A file still being written can be loaded: the reader gets every flushed record.
"""
from __future__ import annotations

from core.recording.format import (CAMERA_MODES, DEFAULT_LANDMARK_COUNT, FOCAL_STATES, FRAME_FIELD_NAMES, HEADER,
                                   KIND_END, KIND_FRAME, KIND_IDENTITY, KIND_META, KIND_NAMES, KIND_SEGMENT, MAGIC,
                                   MAX_PAYLOAD,
                                   RECORD_CRC, RECORD_HEAD, RECORD_OVERHEAD, SCHEMA_VERSION, SUFFIX, TRACKING_STATES,
                                   VERSION_MAJOR, VERSION_MINOR, FrameRecord, RecordingError, RecordingFormatError,
                                   RecordingMeta, frame_dtype)
from core.recording.reader import Recording, load, scan_records
from core.recording.writer import RecordingWriter

__all__ = [
    "CAMERA_MODES", "DEFAULT_LANDMARK_COUNT", "FOCAL_STATES", "FRAME_FIELD_NAMES", "HEADER", "KIND_END",
    "KIND_FRAME", "KIND_IDENTITY", "KIND_META", "KIND_NAMES", "KIND_SEGMENT", "MAGIC", "MAX_PAYLOAD", "RECORD_CRC",
    "RECORD_HEAD", "RECORD_OVERHEAD", "SCHEMA_VERSION", "SUFFIX", "TRACKING_STATES", "VERSION_MAJOR",
    "VERSION_MINOR", "FrameRecord", "RecordingError", "RecordingFormatError", "RecordingMeta", "frame_dtype",
    "Recording", "load", "scan_records", "RecordingWriter",
]
