# End-to-end driver, executed by python-fu-eval inside a real gimp-console (Gimp, Gegl, Gio,
# GLib and GObject are imported by the interpreter). It calls the DragGAN procedures
# NONINTERACTIVE against the real daemon, records what happened in $E2E_DIR/report.json and
# leaves the judging to tests/test_gimp_e2e.py. It raises only when it cannot go on.
import json
import os
import sys
import traceback

D = os.environ["E2E_DIR"]
sys.path.insert(0, D)
from pdb_run import run_procedure  # noqa: E402
URL, TOKEN, DEAD = os.environ["DRAGGAN_URL"], os.environ["DRAGGAN_TOKEN"], os.environ["DEAD_URL"]
MODEL = os.environ["DRAGGAN_MODEL"]
rep = {"gimp": Gimp.version(), "calls": {}}


def call(label, name, image=None, drawables=None, **props):
    status, res = run_procedure(name, image, drawables, **props)
    out = res.index(1) if res.length() > 1 else None
    rep["calls"][label] = {"status": status, "message": None if status == "success" else out}
    return status, out


def pixels(drawable, fmt="R'G'B'A u8"):
    w, h = drawable.get_width(), drawable.get_height()
    return bytes(drawable.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, fmt, Gegl.AbyssPolicy.NONE))


def parasite(target):
    p = target.get_parasite("draggan-session")
    return json.loads(bytes(p.get_data()).decode()) if p is not None else None


def flattened(image):
    dup = image.duplicate()
    layer = dup.flatten()
    data = pixels(layer, "R'G'B' u8")
    dup.delete()
    return data


def mean_diff(a, b, width, channels, box):
    x0, y0, x1, y1 = box
    total = n = 0
    for y in range(y0, y1):
        for x in range(x0, x1):
            i = (y * width + x) * channels
            total += sum(abs(a[i + c] - b[i + c]) for c in range(3))
            n += 3
    return total / n


def stroke(path, *anchors):
    cps = []
    for x, y in anchors:
        cps += [x, y] * 3
    path.stroke_new_from_points(Gimp.PathStrokeType.BEZIER, cps, False)


def changes(result, source, before):
    """The result layer of a drag on source: its parasite, how many pixels differ from the source's
    before, and whether the source kept its pixels."""
    if result is None:
        return {}
    after = pixels(result)
    return {"parasite": parasite(result), "source_unchanged": pixels(source) == before,
            "changed_pixels": sum(after[i:i + 4] != before[i:i + 4] for i in range(0, len(after), 4))}


def layer_names(image):
    return [l.get_name() for l in image.get_layers()]


TRACKED = "DragGAN handles (tracked)"


def tracked(image):
    """The tracked-handles path as [[first anchor, last anchor], ...] and whether it is selected; None without it."""
    path = image.get_path_by_name(TRACKED)
    if path is None:
        return None
    strokes = []
    for sid in path.get_strokes():
        cps = path.stroke_get_points(sid)[1]
        strokes.append([[cps[2], cps[3]], [cps[-4], cps[-3]]])
    selected = [p.get_id() for p in image.get_selected_paths()]
    return {"strokes": strokes, "selected": path.get_id() in selected,
            "count": sum(p.get_name() == TRACKED for p in image.get_paths())}


daemon = dict(server_url=URL, token=TOKEN)
try:
    n_images = len(Gimp.get_images())
    # --- New image: errors first (nothing may be created), then the real one
    call("new_dead", "python-fu-draggan-new-image", server_url=DEAD, token=TOKEN, model=MODEL, seed=5)
    call("new_bad_token", "python-fu-draggan-new-image", server_url=URL, token="wrong-token-0123456789",
         model=MODEL, seed=5)
    rep["images_after_errors"] = len(Gimp.get_images()) - n_images
    status, img = call("new", "python-fu-draggan-new-image", model=MODEL, seed=5, psi=0.7, **daemon)
    if status != "success":
        raise RuntimeError("New image failed: " + str(img))
    src = img.get_layers()[0]
    rep["new"] = {"size": [img.get_width(), img.get_height()], "layers": layer_names(img),
                  "image_parasite": parasite(img), "layer_parasite": parasite(src)}
    W, H = img.get_width(), img.get_height()
    src_before = pixels(src)

    # --- Drag errors: the image must stay as it was
    call("drag_no_path", "python-fu-draggan-drag", img, [src], **daemon)
    path = Gimp.Path.new(img, "drags")
    img.insert_path(path, None, 0)
    stroke(path, (20, 20))
    call("drag_one_anchor", "python-fu-draggan-drag", img, [src], **daemon)
    img.remove_path(path)
    path = Gimp.Path.new(img, "drags")
    img.insert_path(path, None, 0)
    stroke(path, (24, 28), (30, 20), (34, 30))  # three anchors: handle (24, 28), target (34, 30)
    call("drag_dead", "python-fu-draggan-drag", img, [src], server_url=DEAD, token=TOKEN)
    rep["layers_after_errors"] = layer_names(img)

    # --- The drag: soft selection, path 'drags' found by name
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 16, 16, 32, 32)
    Gimp.Selection.feather(img, 8.0)
    sel = pixels(img.get_selection(), "Y u8")
    first_drag = dict(steps=15, mask_lambda=20.0, learning_rate=0.05, **daemon)
    status, layer = call("drag", "python-fu-draggan-drag", img, [src], **first_drag)
    if status != "success":
        raise RuntimeError("drag failed: " + str(layer))
    new = img.get_layers()[0]
    mask = new.get_mask()
    result = pixels(new)
    flat = flattened(img)
    rep["drag"] = {
        "returned_is_top": layer.get_id() == new.get_id(), "layers": layer_names(img),
        "offsets": list(new.get_offsets()[1:]), "source_unchanged": pixels(src) == src_before,
        "selection_soft_values": len({v for v in sel if 0 < v < 255}),
        "mask": None if mask is None else {"centre": pixels(mask, "Y u8")[32 * W + 32],
                                           "corner": pixels(mask, "Y u8")[0],
                                           "equals_selection": pixels(mask, "Y u8") == sel},
        "diff_inside": mean_diff(result, src_before, W, 4, (26, 26, 38, 38)),
        "parasite": parasite(new), "image_parasite": parasite(img), "tracked": tracked(img),
    }
    # the visible picture: the source outside the selection, the edit inside
    src_rgb = bytes(b for i, b in enumerate(src_before) if i % 4 != 3)
    rep["drag"]["flat_diff_inside"] = mean_diff(flat, src_rgb, W, 3, (26, 26, 38, 38))
    rep["drag"]["flat_diff_outside"] = max(mean_diff(flat, src_rgb, W, 3, box) for box in
                                           [(0, 0, W, 6), (0, H - 6, W, H), (0, 0, 6, H), (W - 6, 0, W, H)])

    # --- A second drag on the result, from the "points" argument (image coordinates), no selection, with
    # the "studio" preset (the drags before and after name none: they run the default, "paper")
    Gimp.Selection.none(img)
    top = img.get_layers()[0]
    status, second = call("drag_points", "python-fu-draggan-drag", img, [top], points="[[40, 40, 30, 44]]",
                          steps=5, preset="studio", **daemon)
    rep["drag_points"] = {"layers": layer_names(img), "parasite": parasite(img.get_layers()[0]),
                          "mask": img.get_layers()[0].get_mask() is not None, "tracked": tracked(img),
                          "differs_from_first": pixels(img.get_layers()[0]) != result}

    # --- Both results taken away (as undo does), the same drag on the source again: the first result,
    # not a doubled edit (the source starts from its own state, whatever the session did since)
    for above_src in img.get_layers()[:2]:
        img.remove_layer(above_src)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 16, 16, 32, 32)
    Gimp.Selection.feather(img, 8.0)
    img.set_selected_paths([img.get_path_by_name("drags")])  # the artist picks the original path again
    status, out = call("drag_repeat", "python-fu-draggan-drag", img, [src], **first_drag)
    rep["drag_repeat"] = {"layers": layer_names(img), "equal_to_first": pixels(img.get_layers()[0]) == result,
                          "parasite": parasite(img.get_layers()[0])}

    # --- Reset to original: the session forgets its drags, the tracked-handles path goes
    status, message = call("reset", "python-fu-draggan-reset", img, [img.get_layers()[0]], **daemon)
    rep["reset"] = {"message": message if status == "success" else None, "tracked": tracked(img),
                    "image_parasite": parasite(img), "layers": layer_names(img)}
    img.remove_layer(img.get_layers()[0])
    Gimp.Selection.none(img)

    # --- The source again, after the canvas grew (layer offsets): its session has moved on
    img.resize(W + 16, H + 8, 8, 4)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 0, 0, 40, 40)  # partly outside the layer
    img.remove_path(img.get_path_by_name("drags"))
    path = Gimp.Path.new(img, "drags")
    img.insert_path(path, None, 0)
    stroke(path, (8 + 20, 4 + 20), (8 + 26, 4 + 26))
    # ... naming a preset GIMP's choice does not know: GIMP keeps the default (with a warning)
    status, third = call("drag_offset", "python-fu-draggan-drag", img, [src], steps=5, preset="fast", **daemon)
    names = layer_names(img)
    idx = names.index(src.get_name())
    above = img.get_layers()[idx - 1]
    rep["drag_offset"] = {"layers": names, "above_offsets": list(above.get_offsets()[1:]),
                          "source_offsets": list(src.get_offsets()[1:]), "parasite": parasite(above),
                          "source_unchanged": pixels(src) == src_before,
                          "mask": None if above.get_mask() is None else
                          {"at_0_0": pixels(above.get_mask(), "Y u8")[0],
                           "at_40_40": pixels(above.get_mask(), "Y u8")[40 * W + 40]}}

    # --- Parasites survive XCF
    xcf = Gio.File.new_for_path(D + "/result.xcf")
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, xcf, None)
    again = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, xcf)
    rep["xcf"] = {"image_parasite": parasite(again), "layer_parasites": [parasite(l) for l in again.get_layers()]}
    again.delete()
    img.delete()

    # --- A plain picture the daemon did not make (200x150, the model's picture pasted off-centre):
    # the daemon inverts the selected part, then drags it; the same layer again reuses the session
    if os.path.exists(D + "/plain.png"):
        plain = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(D + "/plain.png"))
        player = plain.get_layers()[0]
        PW, PH = plain.get_width(), plain.get_height()
        plain_before = pixels(player)
        plain.select_rectangle(Gimp.ChannelOps.REPLACE, 80, 50, 45, 45)
        psel = pixels(plain.get_selection(), "Y u8")
        path = Gimp.Path.new(plain, "drags")
        plain.insert_path(path, None, 0)
        stroke(path, (95, 70), (105, 75))
        real = dict(model=MODEL, inversion_w_steps=20, inversion_wplus_steps=0, inversion_tuning_steps=10, steps=8,
                    feather=4, **daemon)
        status, out = call("real", "python-fu-draggan-drag", plain, [player], **real)
        rep["real"] = {"size": [PW, PH], "layers": layer_names(plain), "source_parasite": parasite(player),
                       "source_unchanged": pixels(player) == plain_before}
        if status == "success":
            top = plain.get_layers()[0]
            result = pixels(top)
            differ = [(i // 4 % PW, i // 4 // PW) for i in range(0, len(result), 4)
                      if result[i:i + 4] != plain_before[i:i + 4]]
            rep["real"].update({
                "returned_is_top": out.get_id() == top.get_id(), "offsets": list(top.get_offsets()[1:]),
                "size_of_new": [top.get_width(), top.get_height()],
                "outside_unchanged": all(result[4 * i:4 * i + 4] == plain_before[4 * i:4 * i + 4]
                                         for i in range(PW * PH) if psel[i] == 0),
                "changed_pixels": len(differ),
                "changed_box": [min(x for x, _ in differ), min(y for _, y in differ), max(x for x, _ in differ),
                                max(y for _, y in differ)] if differ else None,
                "diff_inside": mean_diff(result, plain_before, PW, 4, (85, 55, 120, 90)),
                "mask": top.get_mask() is not None, "parasite": parasite(top), "image_parasite": parasite(plain)})
            # the source again: the daemon knows this layer with these settings
            status, out = call("real_again", "python-fu-draggan-drag", plain, [player], **real)
            rep["real_again"] = {"layers": layer_names(plain), "parasite": parasite(plain.get_layers()[0]),
                                 "source_unchanged": pixels(player) == plain_before}
            # the result layer: its own parasite names the session
            status, out = call("real_result", "python-fu-draggan-drag", plain, [plain.get_layers()[0]], **real)
            rep["real_result"] = {"layers": layer_names(plain), "parasite": parasite(plain.get_layers()[0])}
            # the source framed by an oriented box (the 'align' argument) instead of the selection's box
            Gimp.Selection.none(plain)
            boxed = dict(real, align='{"box": {"center": [102, 72], "width": 56, "angle": 15}}',
                         points="[[100, 70, 106, 74]]")
            status, out = call("real_box", "python-fu-draggan-drag", plain, [player], **boxed)
            rep["real_box"] = changes(out if status == "success" else None, player, plain_before)
        plain.delete()

    # --- A tilted cat, framed by the path "DragGAN align" (left eye, right eye, mouth corners) for the
    # demo model; the path "drags" holds the drag (the align path is never taken for the drags)
    tilted_case = json.loads(os.environ["TILTED"])
    cat = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(D + "/tilted.png"))
    cat_layer = cat.get_layers()[0]
    cat_before = pixels(cat_layer)
    align_path = Gimp.Path.new(cat, "DragGAN align")
    cat.insert_path(align_path, None, 0)
    stroke(align_path, *tilted_case["landmarks"])
    drags = Gimp.Path.new(cat, "drags")
    cat.insert_path(drags, None, 0)
    hx, hy, tx, ty = tilted_case["drag"]
    stroke(drags, (hx, hy), (tx, ty))
    cat.set_selected_paths([align_path])  # selected, yet only the alignment
    status, out = call("tilted", "python-fu-draggan-drag", cat, [cat_layer], model="demo", steps=30,
                       inversion_w_steps=30, inversion_wplus_steps=0, inversion_tuning_steps=20, **daemon)
    rep["tilted"] = changes(out if status == "success" else None, cat_layer, cat_before)
    if status == "success":
        record = rep["tilted"]["parasite"]
        rep["tilted"]["drags_from_the_drags_path"] = record["targets"] == [[tx, ty]]
    cat.delete()
except Exception:
    rep["exception"] = traceback.format_exc()
    raise
finally:
    with open(D + "/report.json", "w") as f:
        json.dump(rep, f, indent=1)
print("E2E_DRIVER_DONE", flush=True)
