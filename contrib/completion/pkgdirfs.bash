# bash completion for pkgdirfs                                  -*- shell-script -*-

_pkgdirfs()
{
    local cur prev words cword
    _init_completion || return

    local commands="mount import index verify query prune stats status version"
    if ((cword == 1)); then
        COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur"))
        return
    fi

    case $prev in
        --state)
            _filedir -d
            return
            ;;
        --log)
            _filedir
            return
            ;;
        --layouts)
            COMPREPLY=($(compgen -W "all multi flat legacy multi,flat multi,legacy flat,legacy" -- "$cur"))
            return
            ;;
        --format)
            COMPREPLY=($(compgen -W "table json paths" -- "$cur"))
            return
            ;;
        --keep-atoms)
            _filedir
            return
            ;;
        --log-level)
            COMPREPLY=($(compgen -W "debug info warn error" -- "$cur"))
            return
            ;;
        --removed-grace)
            COMPREPLY=($(compgen -W "0 5m 15m 1h" -- "$cur"))
            return
            ;;
    esac

    local opts
    case ${words[1]} in
        mount) opts="--state --layouts --read-only --allow-other --xattrs --stamp-build-id --removed-grace --init --hide-existing --other-pkgdir -f --foreground --log --log-level --debug --help" ;;
        import) opts="--state --link -q --rebuild --help" ;;
        index) opts="--state --layouts --gz --help" ;;
        verify) opts="--state --deep --help" ;;
        status) opts="--state --help" ;;
        query) opts="--state --format --use --older-than --newer-than --help" ;;
        prune) opts="--state --keep --per-use --older-than --keep-atoms --dry-run --help" ;;
        stats) opts="--state --format --help" ;;
        *) return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    case ${words[1]} in
        mount | import) _filedir -d ;;
    esac
} &&
    complete -F _pkgdirfs pkgdirfs
