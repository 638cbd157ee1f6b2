"""Every loader on a small file written in the exact public format."""

import gzip
import struct

import numpy as np
import pytest

from arnstream.data import load_dataset, loaders
from arnstream.errors import DataError

KDD_NORMAL = "0,tcp,http,SF,181,5450,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,8,8,0.00,0.00,0.00,0.00,1.00,0.00,0.00,9,9,1.00,0.00,0.11,0.00,0.00,0.00,0.00,0.00"  # noqa: E501 (one record in its public format)
KDD_ATTACK = "0,icmp,ecr_i,SF,1032,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,511,511,0.00,0.00,0.00,0.00,1.00,0.00,0.00,255,255,1.00,0.00,1.00,0.00,0.00,0.00,0.00,0.00"  # noqa: E501 (one record in its public format)


def write_gz(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write(text)


@pytest.fixture
def kdd_dir(tmp_path):
    rows = [f"{KDD_NORMAL},normal." for _ in range(5)] + [f"{KDD_ATTACK},smurf." for _ in range(3)] + \
           [f"{KDD_ATTACK.replace('icmp,ecr_i', 'tcp,private')},neptune."] + [f"{KDD_NORMAL},back."] * 2
    write_gz(tmp_path / "kddcup99" / "kddcup.data_10_percent.gz", "\n".join(rows) + "\n")
    return tmp_path


def test_kddcup99_variants(kdd_dir):
    full = loaders.kddcup99(kdd_dir, "full")
    assert (full.n_normal, full.n_anomalous) == (5, 6)
    assert full.columns["src_bytes"][0] == 181.0 and full.columns["service"][5] == "ecr_i"
    assert set(full.classes) == {"normal", "smurf", "neptune", "back"}  # trailing '.' stripped
    rev = loaders.kddcup99(kdd_dir, "rev")
    assert (rev.n_normal, rev.n_anomalous) == (5, 2)
    inv = loaders.kddcup99(kdd_dir, "inv")
    assert (inv.n_normal, inv.n_anomalous) == (6, 5)


def test_nsl_kdd_reads_label_and_difficulty_columns_and_pools_both_files(tmp_path):
    write_gz(tmp_path / "nsl-kdd" / "KDDTrain+_20Percent.txt.gz", f"{KDD_NORMAL},normal,20\n{KDD_ATTACK},smurf,15\n")
    (tmp_path / "nsl-kdd" / "KDDTest+.txt").write_text(f"{KDD_NORMAL},normal,21\n")
    ds = loaders.nsl_kdd(tmp_path, "20percent")
    assert (len(ds), ds.n_normal, ds.n_anomalous) == (3, 2, 1)
    (tmp_path / "nsl-kdd" / "KDDTrain+.txt").write_text(f"{KDD_ATTACK},neptune,21\n")
    assert loaders.nsl_kdd(tmp_path, "full").n_anomalous == 1


def test_kdd_file_with_wrong_field_count_is_a_clear_error(tmp_path):
    write_gz(tmp_path / "kddcup99" / "kddcup.data_10_percent.gz", "0,tcp,http,normal.\n")
    with pytest.raises(DataError, match="expected 42"):
        loaders.kddcup99(tmp_path)


BANK_ARFF = """@relation bank
@attribute job {admin.,services}
@attribute marital {married,single}
@attribute education {basic.4y,high.school}
@attribute default {no,unknown}
@attribute housing {no,yes}
@attribute loan {no,yes}
@attribute contact {telephone,cellular}
@attribute month {may,jun}
@attribute day_of_week {mon,tue}
@attribute poutcome {nonexistent,failure}
@attribute y {yes,no}

@data
admin.,married,basic.4y,no,no,no,telephone,may,mon,nonexistent,no
services,single,high.school,unknown,yes,yes,cellular,jun,tue,failure,yes
"""

BANK_CSV = '''"age";"job";"marital";"education";"default";"housing";"loan";"contact";"month";"day_of_week";"duration";"campaign";"pdays";"previous";"poutcome";"emp.var.rate";"cons.price.idx";"cons.conf.idx";"euribor3m";"nr.employed";"y"
56;"housemaid";"married";"basic.4y";"no";"no";"no";"telephone";"may";"mon";261;1;999;0;"nonexistent";1.1;93.994;-36.4;4.857;5191;"no"
57;"services";"married";"high.school";"unknown";"no";"no";"telephone";"may";"mon";149;1;999;0;"nonexistent";1.1;93.994;-36.4;4.857;5191;"yes"
'''  # noqa: E501 (records in their public format)


def test_bank_from_the_nominal_arff(tmp_path):
    write_gz(tmp_path / "bank" / "bank-additional-full-nominal.arff.gz", BANK_ARFF)
    ds = loaders.bank(tmp_path)
    assert (ds.n_normal, ds.n_anomalous) == (1, 1)
    assert list(ds.columns) == loaders.BANK_FIELDS and ds.columns["job"][1] == "services"


def test_bank_from_the_uci_csv_selects_the_same_nominal_attributes(tmp_path):
    (tmp_path / "bank-additional-full.csv").write_text(BANK_CSV)
    ds = loaders.bank(tmp_path)
    assert (ds.n_normal, ds.n_anomalous) == (1, 1)
    assert list(ds.columns) == loaders.BANK_FIELDS and ds.columns["poutcome"][0] == "nonexistent"


DOH_HEADER = "SourceIP,DestinationIP,SourcePort,DestinationPort,TimeStamp,Duration,FlowBytesSent,FlowSentRate,ResponseTimeTimeSkewFromMedian,Label"  # noqa: E501 (one record in its public format)


def test_doh_layer2_csvs_drop_addresses_and_unusable_rows(tmp_path):
    (tmp_path / "l2-benign.csv").write_text(
        f"{DOH_HEADER}\n192.168.20.191,176.103.130.130,50749,443,2020-01-14 15:43:42,95.08,62311,655.3,-0.0002,Benign\n"
        "192.168.20.191,176.103.130.130,50750,443,2020-01-14 15:43:43,1.5,100,66.6,,Benign\n")
    (tmp_path / "l2-malicious.csv").write_text(
        f"{DOH_HEADER}\n192.168.20.1,8.8.8.8,1,443,2020-01-14 15:43:42,10.0,9000,900.0,0.1,Malicious\n")
    ds = loaders.doh(tmp_path)
    assert (ds.n_normal, ds.n_anomalous) == (1, 1)  # the row with an empty value is dropped
    assert list(ds.columns) == ["Duration", "FlowBytesSent", "FlowSentRate", "ResponseTimeTimeSkewFromMedian"]
    assert loaders.doh(tmp_path, inverse=True).n_normal == 1


def test_creditcard_csv(tmp_path):
    header = '"Time",' + ",".join(f'"V{i}"' for i in range(1, 29)) + ',"Amount","Class"'
    row = lambda c: "0," + ",".join(["-1.35"] * 28) + f',149.62,"{c}"'
    (tmp_path / "creditcard.csv").write_text("\n".join([header, row(0), row(0), row(1)]) + "\n")
    ds = loaders.creditcard(tmp_path)
    assert (ds.n_normal, ds.n_anomalous) == (2, 1)
    assert len(ds.columns) == 29 and "Time" not in ds.columns


def test_covtype_classes_one_to_three_are_normal(tmp_path):
    lines = [",".join(["2596", "51"] + ["0"] * 52 + [str(c)]) for c in (1, 2, 3, 4, 7)]
    write_gz(tmp_path / "covtype.data.gz", "\n".join(lines) + "\n")
    ds = loaders.covtype(tmp_path)
    assert (ds.n_normal, ds.n_anomalous) == (3, 2) and len(ds.columns) == 54


def write_idx(path, array, type_code):
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


def test_mnist_idx_files(tmp_path):
    (tmp_path / "mnist").mkdir()
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", images, 0x08)
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", np.array([0, 7, 0], dtype=np.uint8), 0x08)
    ds = loaders.mnist(tmp_path, normal_digit=0)
    assert (ds.n_normal, ds.n_anomalous) == (2, 1)
    assert ds.columns["px1"][0] == pytest.approx(1 / 255)
    np.testing.assert_array_equal(loaders.read_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"), images)


def test_truncated_idx_file_is_refused(tmp_path):
    with gzip.open(tmp_path / "bad.gz", "wb") as fh:
        fh.write(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + b"\x00" * 3)
    with pytest.raises(DataError, match="payload"):
        loaders.read_idx(tmp_path / "bad.gz")


def test_generic_npz_and_csv(tmp_path):
    np.savez(tmp_path / "toy.npz", X=np.random.rand(6, 3), y=np.array([0, 0, 0, 0, 1, 1]))
    ds = load_dataset(f"npz:{tmp_path / 'toy.npz'}", tmp_path)
    assert (ds.n_normal, ds.n_anomalous, len(ds.columns)) == (4, 2, 3)
    (tmp_path / "toy.csv").write_text("a,b,kind\n1,2,ok\n3,4,ok\n5,6,bad\n")
    ds = load_dataset(f"csv:{tmp_path / 'toy.csv'}:kind:ok", tmp_path)
    assert (ds.n_normal, ds.n_anomalous) == (2, 1) and list(ds.columns) == ["a", "b"]


def test_missing_file_error_names_the_paths_tried(tmp_path):
    with pytest.raises(DataError, match="kddcup.data_10_percent.gz"):
        load_dataset("kddcup99-rev", tmp_path)
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("kdd2000", tmp_path)
