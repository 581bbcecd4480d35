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
