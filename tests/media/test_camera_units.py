"""The parts of the camera work that need no server: masking credentials, the camera-audio spec, the clock a
camera's sound follows, the stamped camera clock, MP4 codec strings for H.265, the USB format choice, and
sync-check's pairing when an offset is near half a second."""

from __future__ import annotations

import struct

import pytest

from media import mp4box, synccheck
from media.clock import DeviceClock, FollowerClock
from media.sources import SourceError
from media.sources.camera import choose_fourcc, v4l2_formats
from media.sources.rtsp import masked, with_login
from media.sources.spec import camera_audio_index, open_audio_source


@pytest.mark.parametrize(("text", "shown"), [
    ("rtsp://admin:12345@10.0.0.5:554/Streaming/101", "rtsp://admin:***@10.0.0.5:554/Streaming/101"),
    ("copy:rtsp://admin:p@ss@word@cam/main", "copy:rtsp://admin:***@cam/main"),  # an unencoded @ in the password
    ("error in 'rtsp://u:s%3Ac@h/x' and 'http://v:w@h2/'", "error in 'rtsp://u:***@h/x' and 'http://v:***@h2/'"),
    ("rtsp://user@cam/x", "rtsp://user@cam/x"),  # a user without a password: nothing to hide
    ("rtsp://cam/x?user=admin&password=12345&ch=1", "rtsp://cam/x?user=admin&password=***&ch=1"),
    ("synthetic:seed=1", "synthetic:seed=1"),
])
def test_passwords_in_urls_are_masked(text: str, shown: str) -> None:
    assert masked(text) == shown


def test_a_login_given_apart_goes_into_the_url_percent_encoded() -> None:
    assert with_login("rtsp://cam:554/main", "admin", "a:b@c d") == "rtsp://admin:a%3Ab%40c%20d@cam:554/main"
    assert with_login("rtsp://old:pw@cam/main", "admin", "new") == "rtsp://admin:new@cam/main"
    assert with_login("rtsp://old:pw@cam/main", None, None) == "rtsp://old:pw@cam/main"


def test_the_camera_audio_spec() -> None:
    assert camera_audio_index("camera:2") == 2 and camera_audio_index("camera") == 0
    assert camera_audio_index("pulse") is None and camera_audio_index("synthetic") is None
    with pytest.raises(SourceError, match="expected camera:N"):
        camera_audio_index("camera:left")
    with pytest.raises(SourceError, match="the recorder takes it from that camera"):
        open_audio_source("camera:1")


def test_a_cameras_sound_follows_its_picture_clock_through_one_mapping() -> None:
    leader = DeviceClock()
    for k in range(200):  # the camera's clock: 100 ppm fast, seen 40 ms late
        leader.observe(10.0 + k * 0.04, 1000.0 + k * 0.04 / 1.0001 + 0.040)
    holder = {"clock": leader}
    sound = FollowerClock(lambda: holder["clock"])
    for n in range(0, 48000 * 8, 960):  # sample n was taken at camera time 10.0 + n / 48000
        sound.observe(n / 48000, 10.0 + n / 48000)
    assert sound.ready
    for n in (0, 96000, 300000):
        assert sound.to_shared(n / 48000) == pytest.approx(leader.to_shared(10.0 + n / 48000), abs=1e-6)
        assert sound.to_device(sound.to_shared(n / 48000)) == pytest.approx(n / 48000, abs=1e-6)
    # A camera reconnected: a new picture clock takes over at once, with no relearning of the sound's link.
    fresh = DeviceClock()
    fresh.observe(10.0, 2000.0)
    holder["clock"] = fresh
    assert sound.to_shared(0.0) == pytest.approx(2000.0, abs=1e-6)
    # The camera's clock stepped by a second: the link starts over rather than bending.
    sound.observe(9.0, 100.0)
    assert sound.link.to_shared(9.0) == pytest.approx(100.0)


def test_a_stamped_clock_moves_its_offset_slowly_once_it_has_a_second_of_points() -> None:
    clock = DeviceClock.stamped()
    for k in range(50):  # 2 s of pictures arriving 30 ms after they were taken
        clock.observe(k * 0.04, 100.0 + k * 0.04 + 0.030)
    assert clock.offset == pytest.approx(100.030, abs=1e-3)
    for k in range(50, 100):  # then the network gets 20 ms faster: the mapping follows at 2 ms a second
        clock.observe(k * 0.04, 100.0 + k * 0.04 + 0.010)
    moved = 100.030 - clock.offset
    assert 0.0 < moved <= 0.002 * 2.0 + 1e-6, moved
    plain = DeviceClock(settle_s=0.0)
    for k in range(100):
        plain.observe(k * 0.04, 100.0 + k * 0.04 + (0.030 if k < 50 else 0.010))
    assert 100.030 - plain.offset > 0.015  # the microphone's clock jumps (its scatter is in the stamps)


def hvc1_init(config: bytes) -> bytes:
    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I4s", 8 + len(payload), kind) + payload

    entry = box(b"hvc1", bytes(78) + box(b"hvcC", config))
    stsd = box(b"stsd", struct.pack(">II", 0, 1) + entry)
    trak = box(b"trak", box(b"mdia", box(b"minf", box(b"stbl", stsd))))
    return box(b"ftyp", b"isom\0\0\2\0") + box(b"moov", trak)


def test_the_h265_codec_string_comes_from_the_hvcc() -> None:
    # Main profile, compatible with Main and Main 10 (flags 1 and 2), Main tier, level 3.1, progressive only.
    config = bytes([1, 0x01, 0x60, 0, 0, 0, 0xB0, 0, 0, 0, 0, 0, 93]) + bytes(10)
    assert mp4box.video_codec_string(hvc1_init(config)) == "hvc1.1.6.L93.B0"
    high_tier = bytes([1, 0x22, 0x20, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 120]) + bytes(10)  # Main 10, High tier, 4.0
    assert mp4box.video_codec_string(hvc1_init(high_tier)) == "hvc1.2.4.H120.90"
    with pytest.raises(mp4box.Mp4Error, match="cut short"):
        mp4box.video_codec_string(hvc1_init(config[:8]))


def test_a_usb_camera_is_asked_for_mjpeg_where_it_offers_it() -> None:
    assert choose_fourcc(["YUYV", "MJPG"]) == "MJPG"
    assert choose_fourcc(["YUYV", "JPEG"]) == "JPEG"
    assert choose_fourcc(["YUYV"]) is None and choose_fourcc([]) is None
    # No V4L2 device exists here: a character device that is not one, and a missing path, offer nothing.
    assert v4l2_formats("/dev/null") == [] and v4l2_formats("/dev/video-none") == []


def test_pairing_an_offset_near_half_a_second_keeps_every_pair_on_one_side() -> None:
    flashes = [float(k) for k in range(1, 11)]
    beeps = [k + 0.5 + (0.004 if k % 2 else -0.004) for k in range(0, 12)]  # 496 or 504 ms after each flash
    offsets = [d for _, d in synccheck.pair_offsets(flashes, beeps)]
    assert len(offsets) == 10
    assert max(offsets) - min(offsets) < 0.01, offsets  # not split between -500 and +500 ms
    near = [k + 0.012 for k in range(0, 12)]
    assert [round(d, 3) for _, d in synccheck.pair_offsets(flashes, near)] == [0.012] * 10
