# Observer, executed by python-fu-eval inside the GIMP that runs gui_driver.py: gui_inside.sh starts
# a second `gimp -b`, which hands this to the running GIMP over D-Bus, so it runs while the driver
# waits for an interactive DragGAN Drag held at the daemon's test gate. What the artist sees in the
# image at that moment (the preview layer above the source) goes to $E2E_DIR/observed.json.
# One look, no waiting: while a batch command runs, a plug-in's own call into GIMP that started
# before it waits for it (GIMP's nested main loops), so a waiting observer would hold up the very
# preview it waits for. gui_inside.sh looks again until it sees one.
import json
import os

OUT = os.environ["E2E_DIR"] + "/observed.json"


def pixels(layer):
    w, h = layer.get_width(), layer.get_height()
    return bytes(layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE))


def look():
    for image in Gimp.get_images():
        layers = image.get_layers()
        for i, layer in enumerate(layers):
            if layer.get_name().startswith("DragGAN preview") and i + 1 < len(layers):
                below = layers[i + 1]
                a, b = pixels(layer), pixels(below)
                return {"preview": layer.get_name(), "position": i, "below": below.get_name(),
                        "layers": [l.get_name() for l in layers], "visible": layer.get_visible(),
                        "size": [layer.get_width(), layer.get_height()],
                        "size_below": [below.get_width(), below.get_height()],
                        "offsets": list(layer.get_offsets()[1:]), "offsets_below": list(below.get_offsets()[1:]),
                        "differs_from_below": sum(x != y for x, y in zip(a, b))}
    return None


seen = look()
with open(OUT + ".partial", "w") as f:
    json.dump({"seen": seen, "images": [[l.get_name() for l in i.get_layers()] for i in Gimp.get_images()]}, f)
os.replace(OUT + ".partial", OUT)  # whole, for gui_inside.sh to read
