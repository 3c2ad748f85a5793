// vmm_server_fixtures: the loop device, tgtd and nfs-ganesha helpers live in their own files.
