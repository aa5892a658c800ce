# bash completion for ctprobe: source <(ctprobe completion bash)
_ctprobe() {
	local cur=${COMP_WORDS[COMP_CWORD]}
	COMPREPLY=()
	if [ "$COMP_CWORD" -eq 1 ]; then
		mapfile -t COMPREPLY < <(compgen -W 'trace report probes selftest doctor version help completion' -- "$cur")
		return
	fi
	local words=
	case ${COMP_WORDS[1]} in
	trace)
		case $cur in
		-*) words='--all --attach -c --count --cri-socket --duration --history --host --host-root --interval --log-format --max-active --metrics --netns --no-color --no-names -o --overwrite --pid --port --proto -q --ring-size --rotate-count --rotate-size --skip-point --timeline -w' ;;
		*) words='' ;;
		esac ;;
	report)
		case $cur in
		-*) words='--all --host --netns --no-color -o --outcome --pid --pod --port --proto -r --race --since --until' ;;
		*) words='' ;;
		esac ;;
	probes)
		case $cur in
		-*) words='--attach --cri-socket --host-root --no-names -o' ;;
		*) words='' ;;
		esac ;;
	selftest)
		case $cur in
		-*) words='--all --lookups --min-clashes --no-color -o --scenario' ;;
		*) words='' ;;
		esac ;;
	doctor)
		case $cur in
		-*) words='--fill-threshold --netns -o' ;;
		*) words='' ;;
		esac ;;
	version)
		case $cur in
		-*) words='' ;;
		*) words='' ;;
		esac ;;
	help)
		case $cur in
		-*) words='' ;;
		*) words='trace report probes selftest doctor version help completion' ;;
		esac ;;
	completion)
		case $cur in
		-*) words='' ;;
		*) words='bash zsh fish' ;;
		esac ;;
	esac
	if [ -n "$words" ]; then
		mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
	fi
}
complete -o default -F _ctprobe ctprobe
