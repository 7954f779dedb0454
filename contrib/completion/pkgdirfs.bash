# bash completion for pkgdirfs                                  -*- shell-script -*-

_pkgdirfs()
{
    local cur prev words cword
    _init_completion || return

    local commands="mount import index export verify query prune snapshot channel stats status version"
    if ((cword == 1)); then
        COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur"))
        return
    fi

    if [[ ${words[1]} == snapshot ]] && ((cword == 2)) && [[ $cur != -* ]]; then
        COMPREPLY=($(compgen -W "create list show diff delete" -- "$cur"))
        return
    fi
    if [[ ${words[1]} == channel ]] && ((cword == 2)) && [[ $cur != -* ]]; then
        COMPREPLY=($(compgen -W "set list delete" -- "$cur"))
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
            if [[ ${words[1]} == query || ${words[1]} == snapshot ]]; then
                COMPREPLY=($(compgen -W "table json paths" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "table json" -- "$cur"))
            fi
            return
            ;;
        --keep-atoms)
            _filedir
            return
            ;;
        --gpg-home | --trust-keyring)
            _filedir -d
            return
            ;;
        --sign-key)
            COMPREPLY=($(compgen -W "$(gpg --list-secret-keys --with-colons 2>/dev/null | awk -F: '$1 == "fpr" { print $10 }')" -- "$cur"))
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
        --arch)
            COMPREPLY=($(compgen -W "alpha amd64 arm arm64 hppa loong m68k mips ppc ppc64 riscv s390 sparc x86" -- "$cur"))
            return
            ;;
        --meta)
            compopt -o nospace 2>/dev/null
            COMPREPLY=($(compgen -W "CHOST= CBUILD= PROFILE= KEYWORDS= SLOT= EAPI= LICENSE= REPO= USE= IUSE=" -- "$cur"))
            return
            ;;
        --chost | --keywords | --cflags | --keep)
            return
            ;;
    esac

    local opts
    case ${words[1]} in
        mount) opts="--state --catalog --blobs --layouts --read-only --channel --allow-other --xattrs --stamp-build-id --removed-grace --keep --per-use --init --hide-existing --other-pkgdir --sign-key --gpg-home --trust-keyring -f --foreground --log --log-level --debug -h --help" ;;
        import) opts="--state --catalog --blobs --link --keep-invalid -q --quiet --rebuild --sign-key --gpg-home --trust-keyring -h --help" ;;
        index) opts="--state --catalog --blobs --layouts --gz -h --help" ;;
        export) opts="--state --catalog --blobs --copy -q --quiet -h --help" ;;
        verify) opts="--state --catalog --blobs --deep --trust-keyring -h --help" ;;
        status) opts="--state --catalog --blobs -h --help" ;;
        query) opts="--state --catalog --blobs --format --use --older-than --newer-than --chost --keywords --arch --cflags --meta --keep --per-use -h --help" ;;
        prune) opts="--state --catalog --blobs --keep --per-use --older-than --keep-atoms --dry-run -h --help" ;;
        snapshot) opts="--state --catalog --blobs --query --format -h --help" ;;
        channel) opts="--state --catalog --blobs --snapshot --live --query --ttl --uri --format -h --help" ;;
        stats) opts="--state --catalog --blobs --format -h --help" ;;
        *) return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    case ${words[1]} in
        mount | import | status | export) _filedir -d ;;
    esac
} &&
    complete -F _pkgdirfs pkgdirfs
