"""DGM_SERVE_DEVICE: which device the API serves classifiers on (`auto` takes a GPU when there is one)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from core.settings import Settings
from service.app import create_app
from service.classifiers import serving_device


def test_serve_device_auto_takes_the_gpu_only_when_torch_sees_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert serving_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert serving_device("auto") == "cpu"
    assert serving_device("cpu") == "cpu"


def test_serve_device_cuda_without_a_gpu_stops_the_api_at_start(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    settings = Settings(data_dir=tmp_path, serve_device="cuda:0", sweep_interval_s=0)
    with pytest.raises(RuntimeError, match="DGM_SERVE_DEVICE=cuda:0, but torch sees no GPU"):
        create_app(settings)


def test_serve_device_default_is_auto_and_typos_fail_when_settings_load(tmp_path, monkeypatch):
    assert Settings(data_dir=tmp_path).serve_device == "auto"
    monkeypatch.setenv("DGM_SERVE_DEVICE", "gpu")
    with pytest.raises(ValidationError, match="serve_device"):
        Settings(data_dir=tmp_path)


def test_serve_device_reaches_the_classifier_cache(tmp_path):
    app = create_app(Settings(data_dir=tmp_path, serve_device="cpu", sweep_interval_s=0))
    assert app.state.classifiers.device == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert create_app(Settings(data_dir=tmp_path, sweep_interval_s=0)).state.classifiers.device == expected
