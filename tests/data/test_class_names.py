"""soxai.data.class_names.class_text: how every written sentence names a class."""

from soxai.data.class_names import class_text, read_class_names


def test_class_text__names_where_the_data_has_them_and_never_a_name_that_reads_as_another_code():
    assert class_text(0, ("round", "lobed")) == "class round" and class_text(1, ("round", "lobed")) == "class lobed"
    assert class_text(2, ("round", "lobed")) == "class 2" and class_text(0) == "class 0"  # no name: the code
    assert class_text(1, ("0", "1", "2")) == "class 1"  # MNIST's digits: the name is the code
    assert class_text(1, ("1", "10", "2")) == "class '10' (label 1)"  # folders sorted as text
    assert class_text(0, ("", "b")) == "class 0"


def test_read_class_names__from_the_data_stage_or_none(tmp_path):
    from soxai.run_dir import RunDir, write_json

    run = RunDir(tmp_path)
    assert read_class_names(run) == ()  # the data stage has not run
    run.data_info.parent.mkdir(parents=True, exist_ok=True)
    write_json(run.data_info, {"class_names": ["round", 3]})
    assert read_class_names(run) == ("round", "3")
    write_json(run.data_info, {"source": "cells"})
    assert read_class_names(run) == ()
