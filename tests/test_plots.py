import dataclasses

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from metalearn import plots  # noqa: E402
from metalearn.episodes import sample_episode  # noqa: E402
from metalearn.evaluate import Accuracy  # noqa: E402


def acc(mean, ci):
    return Accuracy(mean=mean, ci95=ci, episodes=600, per_episode=())


def test_show_episode_layout():
    images = torch.randint(0, 256, (10, 6, 1, 8, 8), dtype=torch.uint8)
    episode = sample_episode(images, 4, 2, 3, torch.Generator().manual_seed(0))
    fig = plots.show_episode(episode)
    axes = fig.get_axes()
    assert len(axes) == 4 * (2 + 1 + 3)
    assert "4-way 2-shot" in fig._suptitle.get_text()
    plt.close(fig)


def test_show_characters_labels_rows():
    images = torch.randint(0, 256, (5, 6, 1, 8, 8), dtype=torch.uint8)
    fig = plots.show_characters(images, [0, 3], examples=4, row_labels=["a", "b"])
    assert len(fig.get_axes()) == 8
    assert fig.get_axes()[4].get_ylabel() == "b"
    plt.close(fig)


def test_learning_curve_labels_and_errors():
    ax = plots.plot_learning_curve(
        [1, 2, 3],
        [0.5, 0.6, 0.7],
        errors=[0.01] * 3,
        label="x",
        ylabel="acc",
        xlabel="step",
    )
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "acc"
    assert ax.get_legend() is not None
    with pytest.raises(ValueError, match="3 steps but 2 values"):
        plots.plot_learning_curve([1, 2, 3], [0.5, 0.6])
    with pytest.raises(ValueError, match="1 errors but 2 values"):
        plots.plot_learning_curve([1, 2], [0.5, 0.6], errors=[0.1])
    plt.close("all")


def test_results_table():
    table = plots.ResultsTable(["5-way 1-shot", "20-way 1-shot"])
    table.add(
        "ours", {"5-way 1-shot": acc(0.9612, 0.0041)}, paper={"5-way 1-shot": 98.7}
    )
    table.add("other", {"20-way 1-shot": acc(0.5, 0.01)})
    markdown = table.to_markdown()
    assert "| ours | 96.12 ± 0.41 % | 98.7 % | – | – |" in markdown
    assert "5-way 1-shot (paper)" in markdown
    assert "<td>96.12 ± 0.41 %</td>" in table._repr_html_()
    assert repr(table) == markdown  # a cell's plain-text output is the table
    with pytest.raises(ValueError, match="Unknown settings"):
        table.add("bad", {"10-way": acc(0.1, 0.1)})


def test_validation_curves_against_time_and_steps():
    from metalearn.history import History

    history = History()
    for step, seconds, acc in ((5, 60.0, 0.5), (10, 120.0, 0.7)):
        history.record_eval(step, {"acc_1shot": acc, "train_seconds": seconds})
    run = type("Run", (), {"history": history})
    ax = plots.plot_validation_curves({"MAML": run}, "acc_1shot")
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == [1.0, 2.0] and list(line.get_ydata()) == [50, 70]
    assert "minutes" in ax.get_xlabel() and "1shot" in ax.get_ylabel()
    ax = plots.plot_validation_curves({"MAML": run}, "acc_1shot", against="steps")
    assert list(ax.get_lines()[0].get_xdata()) == [5, 10]
    with pytest.raises(ValueError, match="no evaluation metric 'acc_5shot'"):
        plots.plot_validation_curves({"MAML": run}, "acc_5shot")


def test_show_episode_with_unequal_shots_draws_every_example():
    images = torch.randint(0, 256, (10, 6, 1, 8, 8), dtype=torch.uint8)
    episode = sample_episode(images, 3, 3, 2, torch.Generator().manual_seed(0))
    keep = torch.tensor([True, True, True, True, False, False, True, True, True])
    uneven = dataclasses.replace(
        episode,
        support_x=episode.support_x[keep],
        support_y=episode.support_y[keep],
    )  # 3, 1 and 3 support examples
    fig = plots.show_episode(uneven)
    assert "3-way 1- to 3-shot" in fig._suptitle.get_text()
    drawn = [ax for ax in fig.get_axes() if ax.get_images()]
    assert len(drawn) == 7 + 3 * 2  # every support image and every query
    plt.close(fig)


def test_results_table_refuses_what_it_would_misprint():
    table = plots.ResultsTable(("5-way 1-shot",))  # any sequence of names
    assert table.settings == ["5-way 1-shot"]
    with pytest.raises(TypeError, match=r"for one setting write \['5w1s'\]"):
        plots.ResultsTable("5w1s")
    with pytest.raises(ValueError, match="write 98.7"):
        table.add("m", {}, paper={"5-way 1-shot": 0.987})
    with pytest.raises(ValueError, match=r"Unknown settings \['5w5s'\] in paper"):
        table.add("m", {}, paper={"5w5s": 99.0})
    with pytest.raises(TypeError, match="must be an Accuracy"):
        table.add("m", {"5-way 1-shot": 0.95})
    assert table.rows == []  # nothing half-added
