"""DICOM test data built from REAL images: BUSI breast-ultrasound images and their masks written out as small
CT-like series (pydicom) with DICOM SEG objects (highdicom), plus the same data as a NIfTI folder dataset
(the "twin"), and the broken variants every refusal test needs.

Five cases of three slices (40 x 48 px, spacing 0.7 x 0.6 mm, slices 2.5 mm apart); the slices of a case are
different BUSI images. Segment labels are the BUSI categories ("benign mass", "malignant mass"); case02 holds
both with the segment numbers in the other order, case04 is sagittal and its files are named against the slice
order, case05 has an empty slice (a BUSI "normal" image). Patient names are planted so tests can check they
never come out.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image

from tests.conftest import SHARED

BUSI = SHARED.parent / "breast-us" / "busi"
ROWS, COLS = 40, 48
SPACING = (0.7, 0.6)
SLICE = 2.5
PATIENT_NAME = "Doe^Jane"  # planted: must never appear in an API answer, the manifest or a log
PATIENT_ID = "MRN-0042-SECRET"
CASES = {  # case -> (BUSI images per slice, segment order in its SEG, plane)
    "case01": (["benign_0001", "benign_0002", "benign_0003"], ["benign mass"], "axial"),
    "case02": (["benign_0004", "malignant_0001", "malignant_0002"], ["malignant mass", "benign mass"], "axial"),
    "case03": (["malignant_0003", "malignant_0004", "benign_0005"], ["benign mass", "malignant mass"], "axial"),
    "case04": (["benign_0006", "benign_0007", "malignant_0005"], ["malignant mass", "benign mass"], "sagittal"),
    "case05": (["benign_0008", "normal_0001", "malignant_0006"], ["benign mass", "malignant mass"], "axial"),
}
CLASSES = ["background", "benign mass", "malignant mass"]
ORIENTATION = {"axial": [1, 0, 0, 0, 1, 0], "sagittal": [0, 1, 0, 0, 0, -1]}
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass
class Case:
    name: str
    hu: np.ndarray  # rows, cols, slices: the modality values
    labels: np.ndarray  # rows, cols, slices: class indices of CLASSES
    files: list[Path] = field(default_factory=list)  # in slice order
    seg: Path | None = None


def busi_pair(stem: str) -> tuple[np.ndarray, np.ndarray]:
    """A BUSI image (grey uint8) and mask (bool), resized to ROWS x COLS."""
    img = Image.open(BUSI / "images" / f"{stem}.png").convert("L").resize((COLS, ROWS), Image.BILINEAR)
    mask = Image.open(BUSI / "masks" / f"{stem}.png").convert("L").resize((COLS, ROWS), Image.NEAREST)
    return np.asarray(img), np.asarray(mask) > 127


def _ct_slice(case: str, k: int, stored: np.ndarray, plane: str, uids: dict[str, str], instance: int):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    iop = np.asarray(ORIENTATION[plane], dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CT_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientBirthDate, ds.PatientSex = PATIENT_NAME, "19700101", "F"
    ds.PatientID = f"{PATIENT_ID}-{case}"  # one patient per case
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids["study"], uids["series"]
    ds.FrameOfReferenceUID = uids["for"]
    ds.StudyID, ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "1", "20260101", "120000", "ACC42"
    ds.ReferringPhysicianName, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "", "CT", 1, instance
    ds.Manufacturer = "test"
    ds.Rows, ds.Columns = stored.shape
    ds.PixelSpacing = list(SPACING)
    ds.SliceThickness = SLICE
    ds.ImageOrientationPatient = [float(v) for v in iop]
    ds.ImagePositionPatient = [float(v) for v in np.array([-20.0, -30.0, 40.0]) + k * SLICE * normal]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, -1024, "HU"
    ds.PixelData = stored.astype(np.uint16).tobytes()
    return ds


def write_seg(path: Path, sources: list, masks: dict[str, np.ndarray], order: list[str]) -> Path:
    """A BINARY SEG (highdicom) of ``masks`` (label -> rows, cols, slices bool) over ``sources`` (slice order)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algo = hd.AlgorithmIdentificationSequence(name="manual", version="1", family=codes.cid7162.ArtificialIntelligence)
    descs = [hd.seg.SegmentDescription(
        segment_number=i + 1, segment_label=label, segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Mass, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for i, label in enumerate(order)]
    del algo
    pixels = np.stack([np.moveaxis(masks[label], 2, 0) for label in order], axis=-1).astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descs, series_instance_uid=hd.UID(), series_number=2, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="test", manufacturer_model_name="manual", software_versions="1",
        device_serial_number="1")
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path


def build(root: Path) -> dict[str, Case]:
    """The DICOM dataset under ``root`` (one folder per case: slices + seg.dcm); returns the cases."""
    from pydicom.uid import generate_uid

    cases = {}
    for ci, (name, (stems, order, plane)) in enumerate(CASES.items()):
        pairs = [busi_pair(s) for s in stems]
        stored = [img.astype(np.uint16) * 4 + 24 for img, _ in pairs]  # HU = 4 * grey - 1000
        labels = np.zeros((ROWS, COLS, len(stems)), np.uint8)
        masks = {label: np.zeros((ROWS, COLS, len(stems)), bool) for label in order}
        for k, (s, (_, m)) in enumerate(zip(stems, pairs, strict=True)):
            label = "benign mass" if s.startswith("benign") else "malignant mass" if s.startswith("malignant") else None
            if label is not None:
                masks[label][:, :, k] = m
                labels[:, :, k][m] = CLASSES.index(label)
        uids = {"study": generate_uid(), "series": generate_uid(), "for": generate_uid()}
        hu = np.stack([s.astype(np.float32) - 1024 for s in stored], axis=-1)
        case = Case(name, hu, labels)
        sources = []
        for k, st in enumerate(stored):
            instance = len(stored) - k if ci % 2 else k + 1  # instance numbers against the slice order in some cases
            ds = _ct_slice(name, k, st, plane, uids, instance)
            fname = f"IM{(len(stored) - k) if plane == 'sagittal' else k:04d}"  # no extension, as PACS exports do
            path = root / name / fname
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            case.files.append(path)
            sources.append(ds)
        case.seg = write_seg(root / name / "seg.dcm", sources, masks, order)
        cases[name] = case
    return cases


def write_twin(root: Path, cases: dict[str, Case]) -> Path:
    """The same data as a NIfTI folder dataset (images/ + masks/, the series' spacing)."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, c in cases.items():
        affine = np.diag([*SPACING, SLICE, 1.0])
        nib.save(nib.Nifti1Image(c.hu.astype(np.float32), affine), str(root / "images" / f"{name}.nii.gz"))
        nib.save(nib.Nifti1Image(c.labels, affine), str(root / "masks" / f"{name}.nii.gz"))
    return root


def copy_dataset(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".sikd-dicom*"))
    return dest


# ------------------------------------------------------------------------------------ broken variants

def edit(path: Path, change) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)


def _jpeg_lossless_placeholder(path: Path) -> None:
    """Mark a slice as JPEG Lossless (process 14), the usual CT compression. No encoder for it exists here, so the
    frame holds the raw pixels encapsulated: the refusal comes from the transfer syntax before any byte is read."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLosslessSV1

    def change(ds):
        ds.PixelData = encapsulate([ds.PixelData])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    edit(path, change)


def _shift_frame(ds):
    ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient[2] += 5.0


def _relabel(old, new):
    def change(ds):
        for item in ds.SegmentSequence:
            if item.SegmentLabel == old:
                item.SegmentLabel = new
    return change


def _recode(ds):
    item = next(i for i in ds.SegmentSequence if i.SegmentLabel == "malignant mass")
    item.SegmentedPropertyTypeCodeSequence[0].CodeValue = "108369006"  # Neoplasm, not Mass


def _small_seg(root: Path) -> None:
    """case01's SEG rebuilt over half-size copies of its slices (same instances): frames that fit no slice."""
    sources = []
    for k in range(3):
        ds = pydicom.dcmread(root / "case01" / f"IM{k:04d}")
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[::2, ::2]).tobytes()
        ds.Rows, ds.Columns = ROWS // 2, COLS // 2
        ds.PixelSpacing = [2 * v for v in SPACING]
        sources.append(ds)
    mask = np.zeros((ROWS // 2, COLS // 2, 3), bool)
    mask[5:10, 5:10, :] = True
    write_seg(root / "case01" / "seg.dcm", sources, {"benign mass": mask}, ["benign mass"])


def _overlapping_seg(root: Path) -> None:
    sources = [pydicom.dcmread(root / "case02" / f"IM{k:04d}") for k in range(3)]
    a = np.zeros((ROWS, COLS, 3), bool)
    a[5:20, 5:20, 1] = True
    b = np.roll(a, 5, axis=0)
    write_seg(root / "case02" / "seg.dcm", sources, {"benign mass": a, "malignant mass": b},
                 ["benign mass", "malignant mass"])


def _second_seg(root: Path) -> None:
    shutil.copy(root / "case01" / "seg.dcm", root / "case01" / "seg_b.dcm")
    edit(root / "case01" / "seg_b.dcm", lambda ds: setattr(ds, "SOPInstanceUID", pydicom.uid.generate_uid()))


BROKEN = {  # name -> (how to break the dataset, the file named, words of the problem)
    "instance missing": (lambda r: (r / "case02" / "IM0001").unlink(), "case02/seg.dcm",
                         "references 1 image(s) of its series that are not in the dataset"),
    "series missing": (lambda r: [f.unlink() for f in (r / "case03").glob("IM*")], "case03/seg.dcm",
                       "segments a series none of whose 3 images are in the dataset"),
    "frame misplaced": (lambda r: edit(r / "case03" / "seg.dcm", _shift_frame), "case03/seg.dcm",
                        "frame 1 is placed at"),
    "frame size": (_small_seg, "case01/seg.dcm", "its frames are 20x24 pixels but the slices of the series they "
                                                 "segment are 40x48"),
    "label spelling": (lambda r: edit(r / "case04" / "seg.dcm", _relabel("benign mass", "Benign  Mass")),
                       "case04/seg.dcm", "segment label 'Benign  Mass' is spelled 'benign mass' in"),
    "label coding": (lambda r: edit(r / "case05" / "seg.dcm", _recode), "case05/seg.dcm",
                     "segment 'malignant mass' is coded as SCT 108369006 but as SCT"),
    "label twice": (lambda r: edit(r / "case02" / "seg.dcm", _relabel("malignant mass", "benign mass")),
                    "case02/seg.dcm", "two segments are labelled 'benign mass'"),
    "overlap": (_overlapping_seg, "case02/seg.dcm", "segments overlap on slice case02/IM0001"),
    "no decoder": (lambda r: _jpeg_lossless_placeholder(r / "case01" / "IM0001"), "case01/IM0001",
                   "compressed as JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection "
                   "Value 1]) and no decoder for it is installed; install one of: pip install python-gdcm; "
                   "pip install pylibjpeg pylibjpeg-libjpeg"),
    "multi-frame": (lambda r: edit(r / "case05" / "IM0002", lambda ds: setattr(ds, "NumberOfFrames", 3)),
                    "case05/IM0002", "is a multi-frame image (3 frames"),
    "no SEG": (lambda r: (r / "case01" / "seg.dcm").unlink(), "case01/IM0000",
               "its series (3 image(s)) has no SEG object"),
    "two SEGs": (_second_seg, "case01/seg_b.dcm", "segments the same series as case01/seg.dcm"),
    "uneven slices": (lambda r: edit(r / "case03" / "IM0002", lambda ds: ds.ImagePositionPatient.__setitem__(
        2, float(ds.ImagePositionPatient[2]) + 1.0)), "case03/IM0001", "where the series' slices are 3.000 mm apart"),
    "not an image": (lambda r: edit(r / "case02" / "IM0002", lambda ds: delattr(ds, "ImagePositionPatient")),
                     "case02/IM0002", "has no valid ImagePositionPatient: the slice cannot be placed in space"),
}
