// The one program in the real node's local image (deploy/local/node.sh):
// the pod sandbox's pause process, and the probes the node tests run in pods.
// Standard library only, so it builds with no download.
module mandrill.dev/localcluster/nodeutil

go 1.26.0
