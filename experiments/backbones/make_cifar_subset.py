"""A small class-balanced CIFAR-10 folder tree for CPU-sized real-image runs.

    python experiments/backbones/make_cifar_subset.py [--archive ../shared/data/cifar10-jpeg.tar.gz]
        [--out /tmp/c10sub] [--train 500] [--test 200]

Unpacks the archive beside `--out` (once) and links the first `--train`
training and `--test` test JPEGs of every class (sorted file names, so the
subset is the same on every machine) into `<out>/{train,test}/<class>/`,
the layout of the `folder:<path>` source.
"""

import argparse
import os
import tarfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--archive', default=os.path.join(
        os.path.dirname(__file__), '..', '..', '..', 'shared', 'data', 'cifar10-jpeg.tar.gz'))
    ap.add_argument('--out', default='/tmp/c10sub')
    ap.add_argument('--train', type=int, default=500)
    ap.add_argument('--test', type=int, default=200)
    args = ap.parse_args()
    full = args.out.rstrip('/') + '_full'
    if not os.path.isdir(os.path.join(full, 'train')):
        with tarfile.open(args.archive) as tar:
            tar.extractall(full, filter='data')
    for split, n in (('train', args.train), ('test', args.test)):
        for cls in sorted(os.listdir(os.path.join(full, split))):
            out = os.path.join(args.out, split, cls)
            os.makedirs(out, exist_ok=True)
            for name in sorted(os.listdir(os.path.join(full, split, cls)))[:n]:
                link = os.path.join(out, name)
                if not os.path.lexists(link):
                    os.symlink(os.path.abspath(os.path.join(full, split, cls, name)), link)
    print(f'{args.out}: {10 * args.train} train, {10 * args.test} test images')


if __name__ == '__main__':
    main()
