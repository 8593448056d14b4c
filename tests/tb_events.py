"""Reads a run's TensorBoard event files without the writer's code: TFRecord
framing by hand, `Event` protos decoded, and TensorBoard's purge rule applied
(a `SessionLog.START` at step s drops earlier events with step >= s)."""

import glob
import os
import struct

from tensorboardX.proto import event_pb2


def _events(path):
    data = open(path, 'rb').read()
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack('<Q', data[pos:pos + 8])
        pos += 12                                  # length + its crc
        event = event_pb2.Event()
        event.ParseFromString(data[pos:pos + length])
        pos += length + 4                          # record + its crc
        yield event


def read(workdir):
    """`({tag: {step: value}}, {tag: {step: (height, width)}})` as TensorBoard shows them."""
    files = [list(_events(f)) for f in glob.glob(os.path.join(workdir, 'tensorboard',
                                                               'events.out.tfevents.*'))]
    files.sort(key=lambda events: events[0].wall_time)
    kept = []
    for events in files:
        for event in events:
            if event.HasField('session_log') and event.session_log.status == \
                    event_pb2.SessionLog.START:
                kept = [e for e in kept if e.step < event.step]
            elif event.HasField('summary'):
                kept.append(event)
    scalars, images = {}, {}
    for event in kept:
        for value in event.summary.value:
            if value.HasField('image'):
                images.setdefault(value.tag, {})[event.step] = (value.image.height,
                                                                value.image.width)
            else:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars, images
