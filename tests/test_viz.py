"""Figure builders: what goes in comes out as traces, on the axes asked for."""
import pytest

from vaekit import viz


def test_xy_lines_takes_mappings_and_pairs():
    fig = viz.xy_lines({"a": {4: 1.0, 1: 3.0}, "b": ([1, 2], [5.0, 6.0])}, "t", "S (samples)", "variance", log_x=True,
                       log_y=True, tick_at_points=True)
    assert [list(t.x) for t in fig.data] == [[1, 4], [1, 2]] and list(fig.data[0].y) == [3.0, 1.0]
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log" and list(fig.layout.xaxis.tickvals) == [1, 2, 4]
    assert fig.layout.xaxis.title.text == "S (samples)" and fig.layout.yaxis.title.text == "variance"
    with pytest.raises(ValueError, match="'c' has 2 x values and 1 y values"):
        viz.xy_lines({"c": ([1, 2], [1.0])}, "t", "x", "y")
