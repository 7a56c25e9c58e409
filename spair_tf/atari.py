"""Space Invaders frames from the Arcade Learning Environment (SPAIR_SPEC §2.3).

The paper trains SPAIR on random 48×48 crops of Space Invaders frames and shows its
detections on full 210×160 frames (qualitative: there are no ground-truth boxes). What the
original did (auto_yolo, branch aaai_2019: experiments/atari/yolo_air.py and the "atari"
task of auto_yolo/envs.py; dps, branch aaai_2019: datasets/atari.py StaticAtariDataset and
datasets/base.py's "random" postprocessing): RGB frames of the `NoFrameskip-v4` game recorded
before the 84×84 warp, at most 100 per episode, episodes split into train / val / test;
training images are random 48×48 crops, 4 per frame, placed once when the dataset is built;
the background is a learned solid colour. Its recorded traces are not public, so the frames
are generated here, deterministic given the config (BUILD_NOTES, "Space Invaders"):

- the ROM shipped in the `ale-py` wheel, sticky actions off (repeat_action_probability 0),
  the emulator seeded with the split's seed (train 0, val 1, test 2: each split its own
  episodes);
- a uniformly random policy over the game's minimal action set, each action held for
  `frame_skip` = 4 emulator frames; the observation is the pixel-wise maximum of the last
  two (the usual Atari wrapper; the game draws some sprites on alternate frames);
- one frame recorded every `sample_every` agent steps, at most `max_samples_per_episode`
  per episode (then a new episode starts), until `n_frames` frames;
- with `crop_size`, each frame gives `crops_per_frame` crops at uniformly random positions;
  without it, the full frames (the qualitative test images).

The result is a `datasets.Scattered` with no boxes (M = 0), so `datasets.to_tf_dataset`
feeds it like any other dataset. `load(config)` caches it on disk beside the digit datasets
(same manifest and checksum rules: `datasets.read_cache_entry`).

Command line (exit status 2 and a one-line error for a bad request):
  python -m spair_tf.atari --split train [--n_frames N] [--full_frames] [--cache_dir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
import warnings

import numpy as np

from spair_tf import datasets

GAMES = ("space_invaders",)
FRAME_SHAPE = (210, 160, 3)
CACHE_FORMAT_VERSION = 1
# Frames per split: the training crops match Experiment 1's 64,000 images.
DEFAULT_FRAMES = {"train": 16000, "val": 250, "test": 1000}


@dataclasses.dataclass(frozen=True)
class AtariConfig:
    """Names one dataset of game frames (module docstring). Frozen: it keys the cache."""

    game: str = "space_invaders"
    split: str = "train"
    seed: int = 0                       # emulator, policy and crop positions
    n_frames: int = DEFAULT_FRAMES["train"]
    frame_skip: int = 4                 # emulator frames per agent step (the action held)
    sample_every: int = 8               # agent steps between recorded frames
    max_samples_per_episode: int = 100  # the original's max_samples_per_ep
    crop_size: int | None = 48          # None: full 210×160 frames
    crops_per_frame: int = 4            # the original's n_samples_per_image

    def validate(self) -> None:
        """Raises ValueError naming the field, its value and what it accepts."""
        if self.game not in GAMES:
            raise ValueError(f"game={self.game!r}: use one of {GAMES}.")
        datasets._check_split(self.split)
        for name, low in (("seed", 0), ("n_frames", 1), ("frame_skip", 2), ("sample_every", 1),
                          ("max_samples_per_episode", 1), ("crops_per_frame", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r}: expected an integer ≥ {low}.")
        if self.crop_size is not None and (
                isinstance(self.crop_size, bool) or not isinstance(self.crop_size, int)
                or not 12 <= self.crop_size <= min(FRAME_SHAPE[:2])):
            raise ValueError(f"crop_size={self.crop_size!r}: expected None (full frames) or "
                             f"an integer in [12, {min(FRAME_SHAPE[:2])}].")

    @property
    def n_images(self) -> int:
        return self.n_frames * (self.crops_per_frame if self.crop_size else 1)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        if self.crop_size is None:
            return FRAME_SHAPE
        return (self.crop_size, self.crop_size, 3)


def preset(split: str, n_frames: int | None = None, full_frames: bool | None = None
           ) -> AtariConfig:
    """The Space Invaders dataset of a split: crops for train and val, full frames for test
    (unless `full_frames` says otherwise); seeds train 0, val 1, test 2."""
    datasets._check_split(split)
    full = split == "test" if full_frames is None else full_frames
    config = AtariConfig(split=split, seed=datasets.SPLIT_SEEDS[split],
                         n_frames=DEFAULT_FRAMES[split] if n_frames is None else n_frames,
                         crop_size=None if full else 48)
    config.validate()
    return config


def _emulator(config: AtariConfig):
    """An ALEInterface with the game loaded, seeded, sticky actions off, logging quiet."""
    try:
        import ale_py
        import ale_py.roms
    except ImportError as e:
        raise ValueError(f"Space Invaders needs the ale-py package ({e}); install "
                         "requirements.txt.") from None
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    ale = ale_py.ALEInterface()
    ale.setInt("random_seed", config.seed)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(ale_py.roms.get_rom_path(config.game))
    return ale


def play(config: AtariConfig) -> tuple[np.ndarray, np.ndarray]:
    """Plays the game under the random policy and records frames (module docstring).

    Returns:
      frames: uint8 [n_frames, 210, 160, 3].
      episodes: int32 [n_frames], the episode each frame comes from (0, 1, ...).
    """
    config.validate()
    ale = _emulator(config)
    actions = ale.getMinimalActionSet()
    rng = np.random.default_rng([config.seed, 0])
    frames = np.empty((config.n_frames, *FRAME_SHAPE), np.uint8)
    episodes = np.empty(config.n_frames, np.int32)
    last_two = np.empty((2, *FRAME_SHAPE), np.uint8)
    n, episode, step, in_episode = 0, 0, 0, 0
    while n < config.n_frames:
        action = actions[rng.integers(len(actions))]
        for k in range(config.frame_skip):
            ale.act(action)
            if k >= config.frame_skip - 2:
                ale.getScreenRGB(last_two[k - config.frame_skip + 2])
        step += 1
        if step % config.sample_every == 0:
            np.maximum(last_two[0], last_two[1], out=frames[n])
            episodes[n] = episode
            n += 1
            in_episode += 1
        if ale.game_over() or in_episode == config.max_samples_per_episode:
            ale.reset_game()
            episode, step, in_episode = episode + 1, 0, 0
    return frames, episodes


def crops(frames: np.ndarray, config: AtariConfig) -> np.ndarray:
    """`crops_per_frame` crops of `crop_size` per frame at uniformly random positions (the
    same positions for the same config): uint8 [N·crops_per_frame, S, S, 3], the crops of
    frame i at rows i·crops_per_frame onwards."""
    size, per_frame = config.crop_size, config.crops_per_frame
    height, width = frames.shape[1:3]
    rng = np.random.default_rng([config.seed, 1])
    tops = rng.integers(0, height - size + 1, size=(len(frames), per_frame))
    lefts = rng.integers(0, width - size + 1, size=(len(frames), per_frame))
    rows = tops[..., None] + np.arange(size)                            # [N, P, S]
    cols = lefts[..., None] + np.arange(size)                           # [N, P, S]
    index = np.arange(len(frames))[:, None, None, None]
    out = frames[index, rows[..., :, None], cols[..., None, :]]         # [N, P, S, S, 3]
    return out.reshape(-1, size, size, 3)


def generate(config: AtariConfig) -> datasets.Scattered:
    """The dataset named by `config` (no boxes: M = 0, counts 0)."""
    frames, _ = play(config)
    images = frames if config.crop_size is None else crops(frames, config)
    n = len(images)
    return datasets.Scattered(images=images, boxes=np.zeros((n, 0, 4), np.float32),
                              counts=np.zeros(n, np.int32), labels=np.zeros((n, 0), np.int32))


def _record(config: AtariConfig) -> dict:
    return {"config": dataclasses.asdict(config), "format_version": CACHE_FORMAT_VERSION,
            "kind": "atari"}


def cache_paths(config: AtariConfig, cache_dir: str | None = None) -> tuple[str, str]:
    """(data .npz path, manifest .json path) of `config`'s cache entry."""
    digest = hashlib.sha256(json.dumps(_record(config), sort_keys=True).encode("utf-8")
                            ).hexdigest()[:16]
    height, width, _ = config.image_shape
    stem = f"atari_{config.game}_{config.split}_{height}x{width}_{config.n_images}_{digest}"
    directory = cache_dir or datasets.default_cache_dir()
    return os.path.join(directory, stem + ".npz"), os.path.join(directory, stem + ".json")


def load(config: AtariConfig, cache_dir: str | None = None) -> datasets.Scattered:
    """The dataset named by `config`, from the disk cache or generated and cached. An entry
    that does not match its manifest is regenerated with a warning naming the file."""
    config.validate()
    data_path, manifest_path = cache_paths(config, cache_dir)
    if os.path.exists(manifest_path) or os.path.exists(data_path):
        try:
            arrays = datasets.read_cache_entry(
                _record(config), data_path, manifest_path,
                {"images": ((config.n_images, *config.image_shape), np.uint8)})
            n = config.n_images
            return datasets.Scattered(
                images=arrays["images"], boxes=np.zeros((n, 0, 4), np.float32),
                counts=np.zeros(n, np.int32), labels=np.zeros((n, 0), np.int32))
        except ValueError as e:
            warnings.warn(f"spair_tf.atari: ignoring the cache entry {data_path}: {e}; "
                          "regenerating it", RuntimeWarning, stacklevel=2)
    data = generate(config)
    datasets.write_cache_entry(_record(config), {"images": data.images}, data_path,
                               manifest_path)
    return data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spair_tf.atari",
        description="Generate (and cache) a Space Invaders dataset; print the time taken.")
    parser.add_argument("--split", default="train", choices=datasets.SPLITS)
    parser.add_argument("--n_frames", type=int, help="override the split's number of frames")
    parser.add_argument("--full_frames", action="store_true", default=None,
                        help="full 210×160 frames instead of 48×48 crops (the test split's "
                             "default)")
    parser.add_argument("--cache_dir", help="cache directory (default $SPAIR_TF_CACHE or "
                                            "~/.cache/spair_tf)")
    args = parser.parse_args(argv)
    try:
        config = preset(args.split, args.n_frames, args.full_frames)
        start = time.perf_counter()
        data = load(config, args.cache_dir)
        seconds = time.perf_counter() - start
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    height, width, _ = config.image_shape
    print(f"loaded or generated {len(data)} images {height}×{width} from {config.n_frames} "
          f"frames in {seconds:.2f} s; cache: {cache_paths(config, args.cache_dir)[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
