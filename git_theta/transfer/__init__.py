"""Moving objects to and from remotes over the Git LFS protocol (and file remotes).

Layers, bottom up:
- endpoint: which LFS server (or remote git dir) a remote's objects live at, found the way git-lfs finds it;
- credentials: `git credential fill/approve/reject`;
- lfs_http: the LFS batch API and "basic" transfers, with retries;
- local: file:// and plain-path remotes (objects in <remote git dir>/lfs/objects);
- client: upload/download of a set of objects in batches, in parallel;
- scan: which objects the metadata of some commits or trees references;
- pushing: what a push must upload (the pre-push hook and `git theta push`);
- on_demand: the download callback smudge uses when a checkout lacks objects.
"""
